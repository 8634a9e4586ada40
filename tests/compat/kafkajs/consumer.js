// kafkajs: the consumer part of the getting-started walkthrough (a consumer group with
// eachMessage), then the admin view of the group's committed offsets.
const { Kafka, logLevel } = require('kafkajs')
const { receive } = require('./receive')

async function main () {
  const [bootstrap, topic, group] = process.argv.slice(2)
  const kafka = new Kafka({ clientId: 'strom-compat', brokers: [bootstrap], logLevel: logLevel.WARN })
  const producer = kafka.producer()
  await producer.connect()
  await producer.send({ topic, messages: Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: `hello ${i}` })) })
  await producer.disconnect()

  const consumer = kafka.consumer({ groupId: group })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const received = await receive(consumer, 10)
  await consumer.disconnect()

  const admin = kafka.admin()
  await admin.connect()
  const offsets = await admin.fetchOffsets({ groupId: group, topics: [topic] })
  const groups = await admin.listGroups()
  await admin.disconnect()
  console.log(JSON.stringify({ received, offsets, groups }))
}

main().catch(e => { console.error(e); process.exit(1) })
