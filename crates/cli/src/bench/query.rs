//! `medmesh bench query`: one patient's 24 hours of 1 Hz vitals (5 series,
//! 432,000 samples), read back as a range query, against the same data in a
//! plain SQLite table (primary key on device, code, time).

use super::{TempDir, tempdir};
use clap::Args;
use medmesh_model::{Observation, VitalSign};
use medmesh_storage::Store;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct QueryArgs {
    /// Times each query is repeated; the median and worst are reported.
    #[arg(long, default_value_t = 50)]
    pub repeat: usize,
}

const START_MS: i64 = 1_767_225_600_000;
const DAY_S: i64 = 86_400;
const SERIES: [VitalSign; 5] = [
    VitalSign::HeartRate,
    VitalSign::RespiratoryRate,
    VitalSign::OxygenSaturation,
    VitalSign::BodyTemperature,
    VitalSign::SystolicBloodPressure,
];

fn day_of_vitals() -> Vec<Observation> {
    let mut rng = SmallRng::seed_from_u64(5);
    let mut physiology =
        medmesh_simulator::Physiology::new(&mut rng, medmesh_simulator::Trajectory::Stable);
    let mut out = Vec::with_capacity(DAY_S as usize * SERIES.len());
    for s in 0..DAY_S {
        let t = START_MS + s * 1000;
        for (vital, value) in physiology.sample(t, &mut rng) {
            if SERIES.contains(&vital) {
                out.push(Observation {
                    vital,
                    value,
                    time_ms: t,
                });
            }
        }
    }
    out
}

fn summarize(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        ms(times[times.len() / 2]),
        ms(*times.last().expect("at least one run")),
    )
}

pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.repeat > 0, "--repeat must be at least 1");
    let work: TempDir = tempdir()?;
    let data = day_of_vitals();
    eprintln!(
        "bench query: {} samples (24 h x 5 vital signs at 1 Hz)",
        data.len()
    );

    // medmesh: a server with the patient admitted; samples written through
    // the store's durable path, then checkpointed.
    let mut config = medmesh_server::Config {
        data_dir: work.0.join("medmesh"),
        ..medmesh_server::Config::default()
    };
    config.http.listen = "127.0.0.1:0".parse()?;
    config.mqtt.listen = "127.0.0.1:0".parse()?;
    config.coap.listen = "127.0.0.1:0".parse()?;
    config.hl7.listen = "127.0.0.1:0".parse()?;
    let running = medmesh_server::Server::start(&config).await?;
    running
        .pipeline
        .registry
        .upsert_patient(medmesh_model::Patient {
            id: medmesh_model::PatientId::new("patient-1")?,
            name: "Bench Patient".into(),
            ward: String::new(),
            bed: String::new(),
        })?;
    let store: &Store = &running.pipeline.store;
    for batch in data.chunks(600) {
        store.append("patient-1", batch.to_vec()).await?;
    }
    store.checkpoint().await?;
    let mut ours = Vec::new();
    let mut points = 0;
    for _ in 0..args.repeat {
        let start = Instant::now();
        points = SERIES
            .iter()
            .map(|v| {
                store
                    .range("patient-1", *v, START_MS, START_MS + DAY_S * 1000)
                    .len()
            })
            .sum::<usize>();
        ours.push(start.elapsed());
    }
    anyhow::ensure!(
        points == data.len(),
        "medmesh returned {points} of {} points",
        data.len()
    );

    // SQLite: the same rows, indexed for exactly this query.
    let db = rusqlite::Connection::open(work.0.join("bench.sqlite"))?;
    db.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE samples (device TEXT NOT NULL, code TEXT NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL,
                               PRIMARY KEY (device, code, ts)) WITHOUT ROWID;",
    )?;
    {
        let tx = db.unchecked_transaction()?;
        let mut insert = tx.prepare("INSERT INTO samples VALUES ('patient-1', ?1, ?2, ?3)")?;
        for o in &data {
            insert.execute(rusqlite::params![o.vital.loinc(), o.time_ms, o.value])?;
        }
        drop(insert);
        tx.commit()?;
    }
    let mut theirs = Vec::new();
    let mut query = db.prepare("SELECT ts, value FROM samples WHERE device = 'patient-1' AND code = ?1 AND ts BETWEEN ?2 AND ?3")?;
    for _ in 0..args.repeat {
        let start = Instant::now();
        let mut n = 0;
        for v in SERIES {
            let rows = query.query_map(
                rusqlite::params![v.loinc(), START_MS, START_MS + DAY_S * 1000],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?)),
            )?;
            for row in rows {
                row?;
                n += 1;
            }
        }
        theirs.push(start.elapsed());
        anyhow::ensure!(n == data.len(), "SQLite returned {n} rows");
    }

    // The same day over the REST API, as a client gets it: every point as
    // JSON, and 1-minute buckets (what a trend chart asks for).
    let http = reqwest::Client::new();
    let url = format!(
        "http://{}/api/v1/patients/patient-1/observations?from={START_MS}&to={}",
        running.http_addr,
        START_MS + DAY_S * 1000
    );
    let mut api_points = Vec::new();
    let mut api_buckets = Vec::new();
    for _ in 0..args.repeat {
        let start = Instant::now();
        let body = http.get(&url).send().await?.bytes().await?;
        api_points.push(start.elapsed());
        anyhow::ensure!(
            body.len() > data.len() * 10,
            "the API returned {} bytes",
            body.len()
        );
        let start = Instant::now();
        let body = http
            .get(format!("{url}&bucket=1m"))
            .send()
            .await?
            .bytes()
            .await?;
        api_buckets.push(start.elapsed());
        anyhow::ensure!(
            body.len() > 1440 * 5 * 40,
            "the API returned {} bytes",
            body.len()
        );
    }
    running.stop();

    println!(
        "\none patient, 24 h x 5 vital signs at 1 Hz = {} samples, {} runs",
        data.len(),
        args.repeat
    );
    let row = |name: &str, times: Vec<Duration>| {
        let (p50, worst) = summarize(times);
        println!("{name:<36} {p50:>8.1}ms {worst:>8.1}ms");
        p50
    };
    println!("{:<36} {:>10} {:>10}", "system", "median", "worst");
    let ours_p50 = row("medmesh store (range read)", ours);
    row("medmesh REST API, every point (JSON)", api_points);
    row("medmesh REST API, 1-minute buckets", api_buckets);
    let theirs_p50 = row("SQLite (primary-key range)", theirs);
    println!(
        "medmesh store vs SQLite: {:.1}x faster (median)",
        theirs_p50 / ours_p50
    );
    Ok(())
}
