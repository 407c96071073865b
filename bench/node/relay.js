// The kafkajs peers of the cdc-relay benchmark: the same work per invocation as
// cdc-relay (parse the MSK event, base64-decode, parse the DMS JSON, apply
// bench/mapping.json, produce with acks=all, wait for every acknowledgement).
//
//   node relay.js seed|batch BROKERS ROUNDS EVENT...
//
// seed:  one producer.send per message under Promise.allSettled (as the seed built it)
// batch: one producer.sendBatch per invocation (as a careful user would)
// kafkajs's idempotent producer is experimental and forces one request in flight, so
// both modes use acks=all without idempotence (the seed's configuration).
'use strict';
const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const [mode, brokers, rounds, ...files] = process.argv.slice(2);
const { transformValue } = require('./transform');

function transform(record) {
  return transformValue(Buffer.from(record.value, 'base64'), record.topic, record.partition, record.offset);
}

async function main() {
  const t0 = process.hrtime.bigint();
  const kafka = new Kafka({ clientId: `bench-kafkajs-${mode}`, brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  console.log(JSON.stringify({ init_ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
  for (let round = 0; round < Number(rounds); round++) {
    for (const file of files) {
      const t = process.hrtime.bigint();
      const event = JSON.parse(fs.readFileSync(file, 'utf8'));
      const out = [];
      for (const key of Object.keys(event.records)) {
        for (const record of event.records[key]) out.push(transform(record));
      }
      let ok = true;
      if (mode === 'seed') {
        const results = await Promise.allSettled(
          out.map((m) => producer.send({ topic: m.topic, acks: -1, messages: [m.message] })),
        );
        ok = results.every((r) => r.status === 'fulfilled');
      } else {
        const byTopic = new Map();
        for (const m of out) {
          if (!byTopic.has(m.topic)) byTopic.set(m.topic, []);
          byTopic.get(m.topic).push(m.message);
        }
        await producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
      }
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      console.log(JSON.stringify({ round, event: file, ms, records: out.length, messages: out.length, ok }));
    }
  }
  await producer.disconnect();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
