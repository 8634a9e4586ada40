// Shared by the kafkajs scripts: runs a subscribed consumer until it has received `count`
// messages, failing after `timeoutMs`; `runOptions` go to consumer.run (autoCommit, ...).
async function receive (consumer, count, timeoutMs = 60000, runOptions = {}) {
  const received = []
  await new Promise((resolve, reject) => {
    const late = () => reject(new Error(`only ${received.length} messages in ${timeoutMs / 1000}s`))
    const timer = setTimeout(late, timeoutMs)
    consumer.run({
      ...runOptions,
      eachMessage: async ({ partition, message }) => {
        received.push({ partition, offset: message.offset, value: message.value.toString() })
        if (received.length === count) { clearTimeout(timer); resolve() }
      }
    })
  })
  return received
}

module.exports = { receive }
