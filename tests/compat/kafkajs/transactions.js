// kafkajs transactions: a committed, an aborted and a committed transaction read back by a
// read_committed and a read_uncommitted consumer, then consume-transform-produce with
// sendOffsets, and the offset it committed for the group.
const { Kafka, logLevel } = require('kafkajs')
const { receive } = require('./receive')

// Reads `count` messages of `topic` from the beginning in a group of its own.
async function readAll (kafka, topic, groupId, count, readUncommitted) {
  const consumer = kafka.consumer({ groupId, readUncommitted })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const received = await receive(consumer, count)
  await consumer.disconnect()
  return received
}

// The group's committed offsets once the one for `topic` is set. Kafka completes a
// transaction's offset commit after EndTxn returns, and kafkajs's OffsetFetch does not ask for
// stable offsets, so it can briefly see none; a bounded wait instead of a sleep.
async function committedOffsets (admin, groupId, topic, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const offsets = await admin.fetchOffsets({ groupId, topics: [topic] })
    if (offsets[0].partitions.every(p => p.offset !== '-1') || Date.now() > deadline) return offsets
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

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

  // The aborted records come before c3 in the log, so four messages in offset order show
  // whether read_committed skipped them; read_uncommitted shows they were written.
  const uncommitted = await readAll(kafka, source, `${group}-uncommitted`, 6, true)

  // Copy the source to the sink in one transaction that also commits the consumed offsets.
  // No auto-commit: the group's offset must come from sendOffsets alone.
  const consumer = kafka.consumer({ groupId: group, readUncommitted: false })
  await consumer.connect()
  await consumer.subscribe({ topic: source, fromBeginning: true })
  const received = await receive(consumer, 4, 60000, { autoCommit: false })
  await consumer.disconnect()
  const copy = await producer.transaction()
  await copy.send({ topic: sink, messages: received.map(m => ({ value: m.value.toUpperCase() })) })
  const next = Math.max(...received.map(m => Number(m.offset))) + 1
  await copy.sendOffsets({ consumerGroupId: group, topics: [{ topic: source, partitions: [{ partition: 0, offset: String(next) }] }] })
  await copy.commit()
  await producer.disconnect()

  const copied = await readAll(kafka, sink, `${group}-reader`, 4, false)
  const offsets = await committedOffsets(admin, group, source)
  await admin.disconnect()
  console.log(JSON.stringify({ uncommitted, received, copied, next, offsets }))
}

main().catch(e => { console.error(e); process.exit(1) })
