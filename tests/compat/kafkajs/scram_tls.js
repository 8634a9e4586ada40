// kafkajs over TLS with SASL/SCRAM (the security suite, tests/security): creates a topic,
// produces ten records, reads them back in a consumer group. Prints one JSON object; the
// Python test asserts on it.
const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')
const { receive } = require('./receive')

async function main () {
  const [bootstrap, topic, group, caFile, mechanism, username, password] = process.argv.slice(2)
  const kafka = new Kafka({
    clientId: 'strom-security',
    brokers: [bootstrap],
    ssl: { ca: [fs.readFileSync(caFile, 'utf8')], rejectUnauthorized: true },
    sasl: { mechanism, username, password },
    logLevel: logLevel.WARN
  })
  const admin = kafka.admin()
  await admin.connect()
  const created = await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true })
  await admin.disconnect()

  const producer = kafka.producer()
  await producer.connect()
  const acks = await producer.send({
    topic,
    acks: -1,
    messages: Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: `secure ${i}` }))
  })
  await producer.disconnect()

  const consumer = kafka.consumer({ groupId: group })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const received = await receive(consumer, 10)
  await consumer.disconnect()
  console.log(JSON.stringify({ created, acks, received }))
}

main().catch(e => { console.error(e); process.exit(1) })
