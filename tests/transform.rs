//! The routes language through the pipeline: golden output for a second routes file.
//! Schema drift and the transform's properties over generated records and routes are
//! the core crate's tests (`crates/core/tests/routes.rs`).

use cdc_relay::dms::Decoder;
use cdc_relay::local::dry_run;
use cdc_relay::pipeline::{Pipeline, PipelineOptions};
use cdc_relay::source;
use cdc_relay::transform::{Routes, Transformer};

use crate::util;

fn pipeline(routes: Routes) -> Pipeline {
    Pipeline::new(
        Decoder::default(),
        Transformer::new(routes),
        PipelineOptions {
            concurrency: 1,
            chunk_size: 64,
            ..PipelineOptions::default()
        },
    )
}

/// Every fixture through `tests/routes/flat.toml` (flat envelope, coercions,
/// changed_only, missing = "null", tombstones, schema-change events) gives exactly the
/// checked-in output.
#[test]
fn flat_routes_golden_output() {
    let routes = Routes::load(&util::root().join("tests/routes/flat.toml")).expect("valid routes");
    let pipeline = pipeline(routes);
    let mut names: Vec<String> = std::fs::read_dir(util::root().join("events"))
        .expect("events dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    for name in names {
        let (origin, records) = source::records(util::load_event(&name));
        let mut text = String::new();
        for line in dry_run(&pipeline, &origin, &records) {
            text.push_str(&line.to_string());
            text.push('\n');
        }
        util::assert_golden(&format!("flat/{}", name.replace(".json", ".jsonl")), &text);
    }
}
