// The seed's winner, as a long-running server (NestJS-style microservice): a kafkajs
// consumer group that, per fetched batch (eachBatch), transforms every DMS record with
// bench/mapping.json, sends the batch's messages with one sendBatch (acks=all), then
// resolves the offsets and commits. The same work as `cdc-relay serve` at least once.
//
//   node server.js BROKERS TOPIC GROUP [MAX_WAIT_MS]
//
// Prints {"ready":true} once the group has assigned partitions; SIGTERM disconnects.
'use strict';
const { Kafka, logLevel } = require('kafkajs');
const { transformValue } = require('./transform');

const [brokers, topic, group, maxWait] = process.argv.slice(2);

async function main() {
  const kafka = new Kafka({ clientId: 'bench-kafkajs-server', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  const consumer = kafka.consumer({ groupId: group, maxWaitTimeInMs: Number(maxWait || 100) });
  await producer.connect();
  await consumer.connect();
  consumer.on(consumer.events.GROUP_JOIN, () => console.log(JSON.stringify({ ready: true })));
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat, commitOffsetsIfNecessary }) => {
      const byTopic = new Map();
      for (const message of batch.messages) {
        const out = transformValue(message.value, batch.topic, batch.partition, Number(message.offset));
        if (!byTopic.has(out.topic)) byTopic.set(out.topic, []);
        byTopic.get(out.topic).push(out.message);
      }
      await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([t, messages]) => ({ topic: t, messages })) });
      for (const message of batch.messages) resolveOffset(message.offset);
      await commitOffsetsIfNecessary();
      await heartbeat();
    },
  });
  const stop = async () => {
    await consumer.disconnect();
    await producer.disconnect();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
