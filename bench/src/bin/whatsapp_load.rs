//! WhatsApp webhooks at a steady rate, each from a new contact, against a running Harmony
//! whose Graph API is a fake served here: how long the webhook takes to acknowledge, and
//! how long from sending a text to the assistant's reply reaching the (fake) Graph API.
//!
//! Usage: `whatsapp_load <harmony base url> <app secret> <fake graph port> <phone number
//! id> <messages per second> <seconds>`; prints `sent acked ack_p50_ms ack_p99_ms replies
//! reply_p50_ms reply_p99_ms non_2xx`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::web::{Data, Json};
use poem::{EndpointExt, Route, Server, handler, post};
use serde_json::{Value, json};

#[derive(Default)]
struct Shared {
    /// When each contact's message was sent, by the `to` the reply will carry.
    sent_at: HashMap<String, Instant>,
    /// Milliseconds from a contact's message to the first reply to them.
    replies: Vec<f64>,
    answered: std::collections::HashSet<String>,
    next_wamid: u64,
    /// Tells this run's wamids from an earlier run's against the same database.
    run: u64,
}

type State = Arc<Mutex<Shared>>;

#[handler]
fn graph_send(Json(body): Json<Value>, state: Data<&State>) -> Json<Value> {
    let to = body["to"].as_str().unwrap_or_default().to_owned();
    let mut shared = state.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(at) = shared.sent_at.get(&to).copied()
        && shared.answered.insert(to.clone())
    {
        shared.replies.push(at.elapsed().as_secs_f64() * 1000.0);
    }
    shared.next_wamid += 1;
    let wamid = format!("wamid.bench-{}-{}", shared.run, shared.next_wamid);
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to.trim_start_matches('+')}],
        "messages": [{"id": wamid}]
    }))
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

#[tokio::main]
#[expect(clippy::print_stdout, reason = "the figures are the program's output")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 7,
        "usage: whatsapp_load <base> <app secret> <fake graph port> <phone number id> <rate> <seconds>"
    );
    let (base, secret, port, number) = (&args[1], &args[2], &args[3], &args[4]);
    let rate: u64 = args[5].parse()?;
    let seconds: u64 = args[6].parse()?;

    // A distinct contact per message, on a Rio de Janeiro prefix no bench patient has.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() % 1000);
    let state: State = Arc::new(Mutex::new(Shared {
        run,
        ..Shared::default()
    }));
    let listener = std::net::TcpListener::bind(format!("127.0.0.1:{port}"))?;
    listener.set_nonblocking(true)?;
    let app = Route::new()
        .at("/:version/:number/messages", post(graph_send))
        .data(state.clone());
    tokio::spawn(
        Server::new_with_acceptor(poem::listener::TcpAcceptor::from_std(listener)?).run(app),
    );

    harmony_whatsapp::install_tls_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let url = format!("{base}/webhooks/whatsapp");
    let acks = Arc::new(Mutex::new(Vec::<f64>::new()));
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        ticker.tick().await;
        let wa_id = format!("55219{:05}{:03}", n, run);
        let body = serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "551140028922", "phone_number_id": number},
                "contacts": [{"profile": {"name": "Cliente Bench"}, "wa_id": wa_id}],
                "messages": [{"from": wa_id, "id": format!("wamid.bench-in-{run}-{n}"),
                              "timestamp": chrono::Utc::now().timestamp().to_string(),
                              "type": "text", "text": {"body": "Oi! Quero agendar uma limpeza de pele amanhã à tarde"}}]
            }}]}]
        }))?;
        let signature = harmony_whatsapp::signature::sign(secret.as_bytes(), &body);
        let (client, url, acks, failures, state) = (
            client.clone(),
            url.clone(),
            acks.clone(),
            failures.clone(),
            state.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .sent_at
                .insert(format!("+{wa_id}"), started);
            let answer = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", signature)
                .body(body)
                .send()
                .await;
            match answer {
                Ok(r) if r.status().is_success() => {
                    acks.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(started.elapsed().as_secs_f64() * 1000.0);
                }
                _ => {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let acked = acks.lock().unwrap_or_else(|p| p.into_inner()).len();
    // Replies still on their way.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replies
            .len()
            >= acked
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ack_ms = acks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut reply_ms = state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .replies
        .clone();
    println!(
        "{total} {acked} {:.2} {:.2} {} {:.1} {:.1} {}",
        percentile(&mut ack_ms, 50.0),
        percentile(&mut ack_ms, 99.0),
        reply_ms.len(),
        percentile(&mut reply_ms, 50.0),
        percentile(&mut reply_ms, 99.0),
        failures.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}
