// kafkajs: the admin and producer parts of the getting-started walkthrough, plus offsets.
// Prints one JSON object describing what the broker returned; the Python test asserts on it.
const { Kafka, CompressionTypes, logLevel } = require('kafkajs')

async function main () {
  const [bootstrap, topic] = process.argv.slice(2)
  const kafka = new Kafka({ clientId: 'strom-compat', brokers: [bootstrap], logLevel: logLevel.WARN })
  const admin = kafka.admin()
  await admin.connect()
  const created = await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true })
  const cluster = await admin.describeCluster()

  const producer = kafka.producer()
  await producer.connect()
  const acks = []
  const base = Date.now() - 60000
  for (let i = 0; i < 20; i++) {
    const res = await producer.send({
      topic,
      compression: i % 2 ? CompressionTypes.GZIP : CompressionTypes.None,
      messages: [{ key: `k${i}`, value: `hello ${i}`, headers: { n: `${i}` }, timestamp: `${base + i}` }]
    })
    acks.push(res[0])
  }
  await producer.disconnect()

  const offsets = await admin.fetchTopicOffsets(topic)
  const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, base + 10)
  const configs = await admin.describeConfigs({ resources: [{ type: 2, name: topic }], includeSynonyms: false })
  await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] })
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] })
  await admin.deleteTopics({ topics: [topic] })
  const remaining = await admin.listTopics()
  await admin.disconnect()
  console.log(JSON.stringify({ created, cluster, acks, offsets, byTime, configs, metadata, remaining }))
}

main().catch(e => { console.error(e); process.exit(1) })
