//! Synthetic MSK events of DMS records, for benchmarks and load tests.
//!
//! [`generate`] writes what an MSK event source mapping would deliver for a busy DMS
//! task: several tables, entities inserted, updated (with before-image) and deleted,
//! values padded to a target size, records partitioned as DMS does (by `schema.table`,
//! its CDC default, or by primary key). Deterministic per seed.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use serde_json::{json, Value};

use crate::source::{base64_text, EventWriter, RecordOut};

/// How DMS chooses the Kafka key (and so the partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum PartitionBy {
    /// `schema.table`: every change of a table in one partition (DMS's CDC default).
    SchemaTable,
    /// The primary key: a table spread over all partitions.
    PrimaryKey,
}

/// What to generate (also the `gen-event` command's options).
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct GenOptions {
    /// Records in the event.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1000))]
    pub records: usize,
    /// Distinct tables.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 4))]
    pub tables: usize,
    /// Source partitions.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 3))]
    pub partitions: u32,
    /// PRNG seed.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 1))]
    pub seed: u64,
    /// Approximate size of each DMS JSON value, in bytes.
    #[cfg_attr(feature = "cli", arg(long, default_value_t = 400))]
    pub value_bytes: usize,
    /// How DMS keys (and so partitions) the records.
    #[cfg_attr(feature = "cli", arg(long, value_enum, default_value_t = PartitionBy::SchemaTable))]
    pub partition_by: PartitionBy,
    /// Source topic.
    #[cfg_attr(feature = "cli", arg(long, default_value = "dms.cdc"))]
    pub topic: String,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            records: 1000,
            tables: 4,
            partitions: 3,
            seed: 1,
            value_bytes: 400,
            partition_by: PartitionBy::SchemaTable,
            topic: "dms.cdc".to_owned(),
        }
    }
}

const TABLES: [(&str, &str); 4] = [
    ("public", "orders"),
    ("public", "users"),
    ("public", "payments"),
    ("sales", "invoices"),
];
const STATUSES: [&str; 4] = ["PENDING", "PAID", "SHIPPED", "DELIVERED"];

fn table(i: usize) -> (String, String) {
    match TABLES.get(i) {
        Some((schema, table)) => ((*schema).to_owned(), (*table).to_owned()),
        None => ("public".to_owned(), format!("table_{i}")),
    }
}

fn partition_of(key: &str, partitions: u32) -> u32 {
    // SipHash with fixed keys: stable for a given build, which is all fixtures need.
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % u64::from(partitions.max(1))) as u32
}

/// Generates an MSK event (as JSON) of `options.records` DMS records.
pub fn generate(options: &GenOptions) -> Value {
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let tables: Vec<(String, String)> = (0..options.tables.max(1)).map(table).collect();
    // Per table: live entities and their current rows.
    let mut live: Vec<BTreeMap<u64, Value>> = vec![BTreeMap::new(); tables.len()];
    let mut next_id: Vec<u64> = vec![1; tables.len()];
    let mut event = EventWriter::new(
        Some("arn:aws:kafka:eu-west-1:111122223333:cluster/cdc/abcd-1234-5"),
        Some("localhost:9092"),
    );
    let mut offsets: BTreeMap<u32, i64> = BTreeMap::new();

    for n in 0..options.records {
        let t = rng.usize(..tables.len());
        let (schema, table) = &tables[t];
        let roll = rng.u32(..100);
        let (op, id) = if live[t].len() < 8 || roll < 20 {
            let id = next_id[t];
            next_id[t] += 1;
            ("insert", id)
        } else {
            let keys: Vec<u64> = live[t].keys().copied().collect();
            let id = keys[rng.usize(..keys.len())];
            (if roll < 30 { "delete" } else { "update" }, id)
        };
        let before = live[t].get(&id).cloned();
        let row = json!({
            "id": id,
            "user_id": (id * 7919) % 997,
            "status": STATUSES[rng.usize(..STATUSES.len())],
            "amount": format!("{}.{:02}", rng.u32(1..1000), rng.u32(..100)),
            "email": format!("user{id}@example.com"),
            "updated_at": format!("2024-11-21T14:{:02}:{:02}Z", (n / 60) % 60, n % 60),
            "note": "",
        });
        let mut doc = json!({
            "data": if op == "delete" { json!({"id": id, "user_id": row["user_id"]}) } else { row.clone() },
            "metadata": {
                "timestamp": "2024-11-21T14:40:00.123456Z",
                "record-type": "data",
                "operation": op,
                "partition-key-type": match options.partition_by {
                    PartitionBy::SchemaTable => "schema-table",
                    PartitionBy::PrimaryKey => "primary-key",
                },
                "schema-name": schema,
                "table-name": table,
                "transaction-id": 100_000 + n,
            }
        });
        if op == "update" {
            doc["before-image"] = before.unwrap_or(Value::Null);
        }
        // Pad the note so the value reaches the requested size.
        let size = doc.to_string().len();
        if options.value_bytes > size {
            let pad = "x".repeat(options.value_bytes - size);
            if let Some(data) = doc["data"].as_object_mut() {
                if op != "delete" {
                    data.insert("note".to_owned(), Value::String(pad));
                }
            }
        }
        match op {
            "delete" => {
                live[t].remove(&id);
            }
            _ => {
                live[t].insert(id, doc["data"].clone());
            }
        }
        let key = match options.partition_by {
            PartitionBy::SchemaTable => format!("{schema}.{table}"),
            PartitionBy::PrimaryKey => id.to_string(),
        };
        let partition = partition_of(&key, options.partitions);
        let offset = offsets.entry(partition).or_insert(0);
        event.push(
            EventWriter::key(&options.topic, i64::from(partition)),
            RecordOut {
                topic: &options.topic,
                partition: i64::from(partition),
                offset: *offset,
                timestamp: 1_732_200_000_000_i64 + n as i64,
                timestamp_type: "CREATE_TIME",
                key: Some(base64_text(key.as_bytes()).into()),
                value: Some(base64_text(doc.to_string().as_bytes()).into()),
                headers: Vec::new(),
            },
        );
        *offset += 1;
    }
    // The writer serialises to plain JSON values: this cannot fail.
    serde_json::to_value(&event).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same seed, same event; another seed, another event; the count is exact.
    #[test]
    fn deterministic_per_seed() {
        let options = GenOptions {
            records: 300,
            ..GenOptions::default()
        };
        let a = generate(&options);
        assert_eq!(a, generate(&options));
        assert_ne!(
            a,
            generate(&GenOptions {
                seed: 2,
                ..options.clone()
            })
        );
        let total: usize = a["records"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_array).map(Vec::len).sum())
            .unwrap_or(0);
        assert_eq!(total, 300);
    }

    /// By schema-table, a table's records all share one partition.
    #[test]
    fn schema_table_partitioning_keeps_a_table_together() {
        let event = generate(&GenOptions {
            records: 200,
            partitions: 8,
            ..GenOptions::default()
        });
        let mut partition_of_key: BTreeMap<String, String> = BTreeMap::new();
        for (group, records) in event["records"].as_object().expect("records map") {
            for r in records.as_array().expect("list") {
                let key = r["key"].as_str().unwrap_or_default().to_owned();
                let previous = partition_of_key.insert(key, group.clone());
                assert!(previous.is_none_or(|p| &p == group));
            }
        }
        assert!(partition_of_key.len() <= 4);
    }
}
