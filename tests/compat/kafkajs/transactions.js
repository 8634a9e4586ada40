// kafkajs transactions: one committed and one aborted transaction read back by a read_committed
// consumer, then consume-transform-produce with sendOffsets, and the offsets it committed.
const { Kafka, logLevel } = require('kafkajs')
const { receive } = require('./receive')

async function main () {
  const [bootstrap, source, sink, group] = process.argv.slice(2)
  const kafka = new Kafka({ clientId: 'strom-compat-txn', brokers: [bootstrap], logLevel: logLevel.WARN })
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic: source, numPartitions: 1 }, { topic: sink, numPartitions: 1 }] })

  const producer = kafka.producer({ transactionalId: `${source}-txn`, idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const committed = await producer.transaction()
  await committed.send({ topic: source, messages: [{ value: 'c0' }, { value: 'c1' }, { value: 'c2' }] })
  await committed.commit()
  const aborted = await producer.transaction()
  await aborted.send({ topic: source, messages: [{ value: 'a0' }, { value: 'a1' }] })
  await aborted.abort()
  const last = await producer.transaction()
  await last.send({ topic: source, messages: [{ value: 'c3' }] })
  await last.commit()

  // Copy the source to the sink in one transaction that also commits the consumed offsets.
  const consumer = kafka.consumer({ groupId: group, readUncommitted: false })
  await consumer.connect()
  await consumer.subscribe({ topic: source, fromBeginning: true })
  const received = await receive(consumer, 4)
  await consumer.disconnect()
  const copy = await producer.transaction()
  await copy.send({ topic: sink, messages: received.map(m => ({ value: m.value.toUpperCase() })) })
  const next = Math.max(...received.map(m => Number(m.offset))) + 1
  await copy.sendOffsets({ consumerGroupId: group, topics: [{ topic: source, partitions: [{ partition: 0, offset: String(next) }] }] })
  await copy.commit()
  await producer.disconnect()

  const reader = kafka.consumer({ groupId: `${group}-reader`, readUncommitted: false })
  await reader.connect()
  await reader.subscribe({ topic: sink, fromBeginning: true })
  const copied = await receive(reader, 4)
  await reader.disconnect()
  const offsets = await admin.fetchOffsets({ groupId: group, topics: [source] })
  await admin.disconnect()
  console.log(JSON.stringify({ received, copied, next, offsets }))
}

main().catch(e => { console.error(e); process.exit(1) })
