//! Many clients booking random, overlapping slots through the HTTP API.
//!
//! Usage:
//!   `book_race setup <base url> <owner token>` prepares the clinic (four professionals
//!   working every day 08:00–20:00, a 30- and a 60-minute service, 50 patients) and
//!   prints `service_30 service_60 professional... patient...`;
//!   `book_race run <base url> <owner token> <clients> <seconds> <first day offset> <ids...>`
//!   books for `seconds` from `clients` concurrent connections, each picking a patient, a
//!   professional, a service and a start on the 30-minute grid of 60 days starting `first day offset`
//!   days from now, and prints `requests rps created conflicts other_4xx server_errors
//!   failed`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const PASSWORD: &str = "bench-password-bench";
/// Professionals and patients the setup creates.
const PROFESSIONALS: usize = 4;
const PATIENTS: usize = 50;

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let response = client
        .request(method, url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "{status}: {body}");
    Ok(body)
}

fn id(value: &Value, key: &str) -> anyhow::Result<String> {
    value[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no {key} in {value}"))
}

async fn setup(base: &str, token: &str) -> anyhow::Result<Vec<String>> {
    harmony_whatsapp::install_tls_provider();
    let client = reqwest::Client::new();
    let post = reqwest::Method::POST;
    call(
        &client,
        reqwest::Method::PATCH,
        format!("{base}/api/v1/agenda-settings"),
        token,
        json!({"granularity_minutes": 30, "min_notice_minutes": 0, "max_advance_days": 365}),
    )
    .await?;
    let mut professionals = Vec::new();
    for i in 0..PROFESSIONALS {
        let invited = call(
            &client,
            post.clone(),
            format!("{base}/api/v1/members"),
            token,
            json!({"email": format!("pro{i}-{}@bench.test", uuid::Uuid::now_v7().simple()),
                   "name": format!("Profissional {i}"), "roles": ["professional"]}),
        )
        .await?;
        call(
            &client,
            post.clone(),
            format!("{base}/api/v1/auth/accept-invitation"),
            "",
            json!({"token": id(&invited, "invitation_token")?, "password": PASSWORD}),
        )
        .await?;
        let user = id(&invited["member"], "user_id")?;
        let week: Vec<Value> = (1..=7)
            .map(|d| json!({"weekday": d, "starts_at": "08:00", "ends_at": "20:00"}))
            .collect();
        call(
            &client,
            reqwest::Method::PUT,
            format!("{base}/api/v1/professionals/{user}/working-hours"),
            token,
            json!({ "intervals": week }),
        )
        .await?;
        professionals.push(user);
    }
    let mut out = Vec::new();
    for minutes in [30, 60] {
        let service = call(
            &client,
            post.clone(),
            format!("{base}/api/v1/services"),
            token,
            json!({"name": format!("Serviço {minutes}"), "category": "facial", "duration_minutes": minutes,
                   "price_cents": 10000, "professional_ids": professionals}),
        )
        .await?;
        out.push(id(&service, "id")?);
    }
    out.extend(professionals);
    // Bookings are for many patients, as at a clinic's front desk.
    for i in 0..PATIENTS {
        let patient = call(
            &client,
            post.clone(),
            format!("{base}/api/v1/patients"),
            token,
            json!({"full_name": format!("Paciente Bench {i}")}),
        )
        .await?;
        out.push(id(&patient, "id")?);
    }
    Ok(out)
}

/// A small xorshift generator: enough to spread requests, no dependency.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    created: AtomicU64,
    conflicts: AtomicU64,
    other_4xx: AtomicU64,
    server_errors: AtomicU64,
    failed: AtomicU64,
}

#[expect(
    clippy::too_many_arguments,
    reason = "the run's parameters, passed through"
)]
async fn client(
    base: Arc<str>,
    token: Arc<str>,
    ids: Arc<Vec<String>>,
    counts: Arc<Counts>,
    deadline: Instant,
    first_day: i64,
    seed: u64,
    http: reqwest::Client,
) {
    let mut random = Random(seed | 1);
    let today = chrono::Utc::now()
        .with_timezone(&chrono_tz::America::Sao_Paulo)
        .date_naive();
    let professionals = &ids[2..2 + PROFESSIONALS];
    let patients = &ids[2 + PROFESSIONALS..];
    while Instant::now() < deadline {
        let day = today + chrono::Duration::days(first_day + random.below(60) as i64);
        let slot = random.below(22);
        let start = format!(
            "{day}T{:02}:{:02}:00-03:00",
            8 + slot / 2,
            if slot.is_multiple_of(2) { 0 } else { 30 }
        );
        let service = &ids[random.below(2) as usize];
        let professional = &professionals[random.below(professionals.len() as u64) as usize];
        let patient = &patients[random.below(patients.len() as u64) as usize];
        let body = json!({"patient_id": patient, "service_ids": [service],
                          "professional_id": professional, "start": start});
        let sent = http
            .post(format!("{base}/api/v1/appointments"))
            .bearer_auth(&*token)
            .json(&body)
            .send()
            .await;
        counts.requests.fetch_add(1, Ordering::Relaxed);
        let counter = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.bytes().await;
                match status {
                    201 => &counts.created,
                    409 => &counts.conflicts,
                    400..=499 => &counts.other_4xx,
                    _ => &counts.server_errors,
                }
            }
            Err(_) => &counts.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::main]
#[expect(clippy::print_stdout, reason = "the figures are the program's output")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("setup") if args.len() == 4 => {
            println!("{}", setup(&args[2], &args[3]).await?.join(" "));
        }
        Some("run") if args.len() >= 10 => {
            let clients: u64 = args[4].parse()?;
            let seconds: u64 = args[5].parse()?;
            let first_day: i64 = args[6].parse()?;
            let ids = Arc::new(args[7..].to_vec());
            let counts = Arc::new(Counts::default());
            harmony_whatsapp::install_tls_provider();
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(clients as usize)
                .build()?;
            let started = Instant::now();
            let deadline = started + Duration::from_secs(seconds);
            let base: Arc<str> = args[2].clone().into();
            let token: Arc<str> = args[3].clone().into();
            let tasks: Vec<_> = (0..clients)
                .map(|i| {
                    tokio::spawn(client(
                        base.clone(),
                        token.clone(),
                        ids.clone(),
                        counts.clone(),
                        deadline,
                        first_day,
                        0x9E37_79B9_7F4A_7C15 ^ (i * 0x2545_F491),
                        http.clone(),
                    ))
                })
                .collect();
            for task in tasks {
                task.await?;
            }
            let elapsed = started.elapsed().as_secs_f64();
            let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
            println!(
                "{} {:.0} {} {} {} {} {}",
                n(&counts.requests),
                n(&counts.requests) as f64 / elapsed,
                n(&counts.created),
                n(&counts.conflicts),
                n(&counts.other_4xx),
                n(&counts.server_errors),
                n(&counts.failed)
            );
        }
        _ => anyhow::bail!(
            "usage: book_race setup <base url> <owner token> | \
             book_race run <base url> <owner token> <clients> <seconds> <first day offset> <ids...>"
        ),
    }
    Ok(())
}
