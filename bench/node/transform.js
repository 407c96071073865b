'use strict';
// The mapping every kafkajs contender applies (bench/mapping.json): DMS JSON -> the
// relay's envelope, key and headers. Shared by relay.js (per invocation) and server.js
// (a long-running consumer).
const fs = require('fs');
const path = require('path');

const mapping = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'mapping.json'), 'utf8'));
const routes = new Map(mapping.routes.map((r) => [r.table, r]));

function project(row, route) {
  if (!row) return null;
  const out = {};
  for (const column of route.include) {
    if (Object.prototype.hasOwnProperty.call(row, column)) out[route.rename[column] || column] = row[column];
  }
  return out;
}

// `value`: the DMS JSON bytes of the record at topic/partition/offset.
function transformValue(value, topic, partition, offset) {
  const record = { topic, partition, offset };
  const doc = JSON.parse(value.toString('utf8'));
  const m = doc.metadata;
  const table = `${m['schema-name']}.${m['table-name']}`;
  const route = routes.get(table);
  if (!route) throw new Error(`no route for ${table}`);
  const key = {};
  for (const column of route.key) key[route.rename[column] || column] = doc.data[column];
  const envelope = {
    op: m.operation,
    source: {
      schema: m['schema-name'], table: m['table-name'], topic: record.topic, partition: record.partition,
      offset: record.offset, transaction_id: m['transaction-id'] ?? null,
      commit_timestamp: m['commit-timestamp'] ?? null, timestamp: m.timestamp ?? null,
    },
    key,
    data: project(doc.data, route),
    before: project(doc['before-image'], route),
  };
  return {
    topic: route.topic,
    message: {
      key: route.key.map((c) => (typeof doc.data[c] === 'string' ? doc.data[c] : JSON.stringify(doc.data[c]))).join('|'),
      value: JSON.stringify(envelope),
      headers: {
        'relay-source-topic': record.topic, 'relay-source-partition': String(record.partition),
        'relay-source-offset': String(record.offset), 'relay-op': m.operation, 'relay-table': table,
      },
    },
  };
}

module.exports = { transformValue };
