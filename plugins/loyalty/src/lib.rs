//! A loyalty program for Harmony clinics.
//!
//! Every completed appointment earns the patient points: by default one point per whole
//! real of the services' prices (needs `services:read`), or what the clinic set for a
//! service with `PUT /rules/{service_id}`. Staff see a patient's balance and history and
//! redeem points; a redemption larger than the balance is refused.

use chrono::{DateTime, SecondsFormat, Utc};
use harmony_plugin_api::{
    Event, Failure, Host, KvWrite, Manifest, Plugin, Request, Response, RouteSpec,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Attempts of a compare-and-set update before giving up (another writer kept winning).
const ATTEMPTS: usize = 8;
/// Most history entries a balance shows.
const HISTORY: u32 = 50;
const MAX_RULE_POINTS: i64 = 100_000;

#[derive(Default)]
struct Loyalty;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Movement {
    /// `earned` or `redeemed`.
    kind: String,
    points: i64,
    at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    appointment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn uuid_param<'r>(request: &'r Request, name: &str) -> Result<&'r str, Failure> {
    let value = request.param(name)?;
    if is_uuid(value) {
        Ok(value)
    } else {
        Err(Failure::invalid(name, "must be a UUID"))
    }
}

fn route(method: &str, path: &str, summary: &str, roles: &[&str]) -> RouteSpec {
    RouteSpec {
        method: method.into(),
        path: path.into(),
        summary: summary.into(),
        description: String::new(),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        request_schema: None,
        response_schema: None,
        query: vec![],
    }
}

fn balance_key(patient: &str) -> String {
    format!("balance:{patient}")
}

/// A ledger entry's key: the newest entry sorts first, so the balance route reads one
/// short page however long the patient's history grows.
fn ledger_key(patient: &str, at: &str, id: &str) -> String {
    let micros = DateTime::parse_from_rfc3339(at)
        .map_or_else(|_| Utc::now().timestamp_micros(), |t| t.timestamp_micros());
    format!("ledger:{patient}:{:019}:{id}", i64::MAX - micros)
}

impl Plugin for Loyalty {
    fn manifest(&self) -> Manifest {
        let balance_schema = json!({
            "type": "object",
            "properties": {
                "patient_id": {"type": "string", "format": "uuid"},
                "points": {"type": "integer", "minimum": 0},
                "history": {"type": "array", "items": {"type": "object", "properties": {
                    "kind": {"type": "string", "enum": ["earned", "redeemed"]},
                    "points": {"type": "integer"},
                    "at": {"type": "string", "format": "date-time"},
                    "appointment_id": {"type": "string", "format": "uuid"},
                    "reason": {"type": "string"}
                }}}
            }
        });
        let mut rules = route("GET", "/rules", "Points per service", &["owner", "admin"]);
        rules.response_schema = Some(json!({"type": "object", "properties": {
            "default": {"type": "string"},
            "rules": {"type": "array", "items": {"type": "object", "properties": {
                "service_id": {"type": "string", "format": "uuid"},
                "points": {"type": "integer"}}}}
        }}));
        let mut set_rule = route(
            "PUT",
            "/rules/{service_id}",
            "Set the points a service earns",
            &["owner", "admin"],
        );
        set_rule.request_schema = Some(
            json!({"type": "object", "required": ["points"], "properties": {
            "points": {"type": "integer", "minimum": 0, "maximum": MAX_RULE_POINTS}}}),
        );
        let mut balance = route(
            "GET",
            "/patients/{patient_id}/balance",
            "A patient's points and latest movements",
            &[],
        );
        balance.response_schema = Some(balance_schema.clone());
        let mut redeem = route(
            "POST",
            "/patients/{patient_id}/redeem",
            "Redeem points (refused beyond the balance)",
            &["owner", "admin", "receptionist"],
        );
        redeem.request_schema = Some(
            json!({"type": "object", "required": ["points", "reason"], "properties": {
            "points": {"type": "integer", "minimum": 1},
            "reason": {"type": "string", "minLength": 1, "maxLength": 200}}}),
        );
        redeem.response_schema = Some(balance_schema);
        Manifest {
            name: "loyalty".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Loyalty program: points for every completed appointment, redeemable at the front desk".into(),
            events: vec!["appointment.completed".into()],
            routes: vec![rules, set_rule, balance, redeem],
            capabilities: vec!["appointments:read".into(), "services:read".into()],
            tasks: vec![],
        }
    }

    fn on_event(&self, host: &Host<'_>, event: Event) -> Result<(), Failure> {
        let payload = &event.payload;
        let (Some(appointment), Some(patient)) = (
            payload["appointment_id"].as_str(),
            payload["patient_id"].as_str(),
        ) else {
            return Err(Failure::internal(
                "the event names no appointment or patient",
            ));
        };
        let credited = format!("credited:{appointment}");
        if host.kv_get(&credited)?.is_some() {
            return Ok(());
        }
        let services: Vec<&str> = payload["service_ids"]
            .as_array()
            .map(|ids| ids.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let points = earned(host, &services)?;
        let movement = Movement {
            kind: "earned".into(),
            points,
            at: event.occurred_at.clone(),
            appointment_id: Some(appointment.to_owned()),
            reason: None,
        };
        for _ in 0..ATTEMPTS {
            let current = host.kv_get_as::<i64>(&balance_key(patient))?;
            let (balance, version) = current.unwrap_or((0, 0));
            let written = host.kv_write(vec![
                KvWrite {
                    key: credited.clone(),
                    value: json!({ "points": points }),
                    if_version: Some(0),
                },
                KvWrite {
                    key: balance_key(patient),
                    value: json!(balance + points),
                    if_version: Some(version),
                },
                KvWrite {
                    key: ledger_key(patient, &movement.at, appointment),
                    value: json!(movement),
                    if_version: None,
                },
            ]);
            match written {
                Ok(()) => return Ok(()),
                Err(f) if f.code == "version_conflict" => {
                    // Credited by a concurrent delivery, or the balance moved: look again.
                    if host.kv_get(&credited)?.is_some() {
                        return Ok(());
                    }
                }
                Err(f) => return Err(f),
            }
        }
        Err(Failure::internal("the balance kept changing; will retry"))
    }

    fn on_request(&self, host: &Host<'_>, request: Request) -> Result<Response, Failure> {
        match (request.method.as_str(), request.route.as_str()) {
            ("GET", "/rules") => {
                let rules: Vec<Value> = host
                    .kv_scan("rule:")?
                    .into_iter()
                    .map(|e| json!({ "service_id": &e.key["rule:".len()..], "points": e.value }))
                    .collect();
                Ok(Response::ok(json!({
                    "default": "1 point per whole real of the service's price",
                    "rules": rules,
                })))
            }
            ("PUT", "/rules/{service_id}") => {
                let service = uuid_param(&request, "service_id")?;
                if !is_in_catalog(host, service)? {
                    return Err(Failure::not_found("service"));
                }
                let points = request.body["points"]
                    .as_i64()
                    .filter(|p| (0..=MAX_RULE_POINTS).contains(p))
                    .ok_or_else(|| {
                        Failure::invalid(
                            "points",
                            format!("must be an integer from 0 to {MAX_RULE_POINTS}"),
                        )
                    })?;
                host.kv_put(&format!("rule:{service}"), points)?;
                Ok(Response::ok(
                    json!({ "service_id": service, "points": points }),
                ))
            }
            ("GET", "/patients/{patient_id}/balance") => {
                let patient = uuid_param(&request, "patient_id")?;
                Ok(Response::ok(balance(host, patient)?))
            }
            ("POST", "/patients/{patient_id}/redeem") => {
                let patient = uuid_param(&request, "patient_id")?;
                redeem(host, patient, &request.body)
            }
            _ => Err(Failure::not_found("route")),
        }
    }
}

/// Whether the clinic offers `service`. Without `services:read` the plugin cannot tell,
/// and takes the clinic's word for it: a rule for a service the clinic lacks earns nothing.
fn is_in_catalog(host: &Host<'_>, service: &str) -> Result<bool, Failure> {
    match host.services() {
        Ok(list) => Ok(list
            .as_array()
            .is_some_and(|list| list.iter().any(|s| s["id"].as_str() == Some(service)))),
        Err(f) if f.status == 403 => Ok(true),
        Err(f) => Err(f),
    }
}

/// Points a visit of these services earns.
fn earned(host: &Host<'_>, services: &[&str]) -> Result<i64, Failure> {
    let mut total = 0;
    let mut catalog: Option<Value> = None;
    for service in services {
        if let Some((points, _)) = host.kv_get_as::<i64>(&format!("rule:{service}"))? {
            total += points;
            continue;
        }
        if catalog.is_none() {
            catalog = Some(match host.services() {
                Ok(list) => list,
                Err(f) if f.status == 403 => {
                    host.warn("services:read is not granted: services without a rule earn nothing");
                    Value::Array(vec![])
                }
                Err(f) => return Err(f),
            });
        }
        let price = catalog
            .as_ref()
            .and_then(Value::as_array)
            .and_then(|list| list.iter().find(|s| s["id"].as_str() == Some(service)))
            .and_then(|s| s["price_cents"].as_i64())
            .unwrap_or(0);
        total += price / 100;
    }
    Ok(total)
}

fn balance(host: &Host<'_>, patient: &str) -> Result<Value, Failure> {
    let points = host
        .kv_get_as::<i64>(&balance_key(patient))?
        .map_or(0, |(p, _)| p);
    let history: Vec<Movement> = host
        .kv_list(&format!("ledger:{patient}:"), None, HISTORY)?
        .entries
        .into_iter()
        .filter_map(|e| serde_json::from_value(e.value).ok())
        .collect();
    Ok(json!({ "patient_id": patient, "points": points, "history": history }))
}

fn redeem(host: &Host<'_>, patient: &str, body: &Value) -> Result<Response, Failure> {
    let points = body["points"]
        .as_i64()
        .filter(|p| *p > 0)
        .ok_or_else(|| Failure::invalid("points", "must be a positive integer"))?;
    let reason = body["reason"]
        .as_str()
        .map(str::trim)
        .filter(|r| !r.is_empty() && r.chars().count() <= 200)
        .ok_or_else(|| Failure::invalid("reason", "must be 1 to 200 characters"))?;
    for attempt in 0..ATTEMPTS {
        let (balance, version) = host
            .kv_get_as::<i64>(&balance_key(patient))?
            .unwrap_or((0, 0));
        if points > balance {
            return Err(Failure::conflict(
                "insufficient_points",
                format!("the patient has {balance} points; {points} cannot be redeemed"),
            ));
        }
        let at = now();
        let movement = Movement {
            kind: "redeemed".into(),
            points: -points,
            at: at.clone(),
            appointment_id: None,
            reason: Some(reason.to_owned()),
        };
        let written = host.kv_write(vec![
            KvWrite {
                key: balance_key(patient),
                value: json!(balance - points),
                if_version: Some(version),
            },
            KvWrite {
                key: ledger_key(patient, &at, &format!("r{attempt}")),
                value: json!(movement),
                if_version: Some(0),
            },
        ]);
        match written {
            Ok(()) => return Ok(Response::ok(self::balance(host, patient)?)),
            Err(f) if f.code == "version_conflict" => continue,
            Err(f) => return Err(f),
        }
    }
    Err(Failure::conflict(
        "busy",
        "the balance kept changing; try again",
    ))
}

harmony_plugin_api::export_plugin!(Loyalty);

#[cfg(test)]
mod tests {
    use super::ledger_key;

    #[test]
    fn the_newest_ledger_entry_sorts_first() {
        let patient = "0190a5c6-0000-7000-8000-000000000001";
        let older = ledger_key(patient, "2026-12-04T09:00:00.5Z", "a");
        let newer = ledger_key(patient, "2026-12-04T09:00:00.500001Z", "b");
        let next_year = ledger_key(patient, "2027-01-01T00:00:00-03:00", "c");
        let mut keys = vec![older.clone(), newer.clone(), next_year.clone()];
        keys.sort();
        assert_eq!(keys, [next_year, newer, older]);
        assert!(keys.iter().all(|k| k.len() == keys[0].len()));
    }
}
