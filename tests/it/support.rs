//! The test harness: a fresh database per test, cloned from a migrated template, and the
//! real server on a free port with ready-made actors.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use harmony_core::Kernel;
use harmony_core::config::Config;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery";

/// With `HARMONY_TEST_LOG` set to a file, every test's server logs there, as JSON, at every
/// level Harmony's own crates use (`scripts/test` then checks the file for personal data
/// and secrets with `scripts/check-logs`). Installed once per test binary.
fn capture_logs() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let Some(path) = std::env::var_os("HARMONY_TEST_LOG") else {
            return;
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("the log capture file");
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,harmony=trace"))
            .json()
            .flatten_event(true)
            .with_writer(std::sync::Mutex::new(file))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one log subscriber");
    });
}

fn admin_url(database: &str) -> String {
    let base = std::env::var("HARMONY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    format!("{base}/{database}")
}

fn role_url(role: &str, database: &str) -> String {
    let base = std::env::var("HARMONY_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1:5432".into());
    format!("postgres://{role}@{base}/{database}")
}

/// A fingerprint of every migration, so a changed migration gets a new template.
fn migrations_fingerprint() -> String {
    fn walk(dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("migrations dir")
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.path());
        for entry in entries {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push((
                    path.display().to_string(),
                    std::fs::read(&path).expect("migration file"),
                ));
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations"),
        &mut files,
    );
    // The modules that are composed matter too: a migration folder exists before its
    // module is added to the list.
    for module in harmony::modules() {
        files.push((module.name().to_owned(), Vec::new()));
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, bytes) in files {
        for b in name.bytes().chain(bytes) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Creates (once per fingerprint, across processes) the migrated template database.
async fn template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("harmony_tpl_{}", migrations_fingerprint());
            harmony_core::db::ensure_database(&admin_url("postgres"), "harmony_test_roles", None)
                .await
                .expect("creating roles (is PostgreSQL running on 127.0.0.1:5432?)");
            let mut admin = AsyncPgConnection::establish(&admin_url("postgres"))
                .await
                .expect("admin connection");
            admin
                .batch_execute("SELECT pg_advisory_lock(727275)")
                .await
                .expect("template lock");
            let ready: i64 = {
                use diesel::sql_types::Text;
                use diesel_async::RunQueryDsl;
                diesel::sql_query(
                    "SELECT 1 FROM pg_database WHERE datname = $1 AND \
                     shobj_description(oid, 'pg_database') = 'ready'",
                )
                .bind::<Text, _>(&name)
                .execute(&mut admin)
                .await
                .expect("template lookup") as i64
            };
            if ready == 0 {
                for sql in [
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    format!("CREATE DATABASE {name} OWNER harmony_owner"),
                ] {
                    admin.batch_execute(&sql).await.expect("creating template");
                }
                let url = SecretString::from(role_url("harmony_owner", &name));
                let sets = harmony_core::module::migrations(&harmony::modules());
                harmony_core::db::migrate(url, sets)
                    .await
                    .expect("migrating template");
                admin
                    .batch_execute(&format!("COMMENT ON DATABASE {name} IS 'ready'"))
                    .await
                    .expect("marking template");
            }
            admin
                .batch_execute("SELECT pg_advisory_unlock(727275)")
                .await
                .expect("template unlock");
            name
        })
        .await
}

/// A database of its own for one test.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let template = template().await;
        let name = format!("harmony_test_{}", Uuid::new_v4().simple());
        let mut admin = AsyncPgConnection::establish(&admin_url("postgres"))
            .await
            .expect("admin connection");
        let mut attempts = 0;
        loop {
            let sql = format!("CREATE DATABASE {name} TEMPLATE {template} OWNER harmony_owner");
            match admin.batch_execute(&sql).await {
                Ok(()) => break,
                // Another test may be copying the template at this instant.
                Err(e) if attempts < 50 && e.to_string().contains("being accessed") => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("creating test database: {e}"),
            }
        }
        TestDb { name }
    }

    /// A connection as the application role, outside any tenant.
    pub async fn app_connection(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&role_url("harmony_app", &self.name))
            .await
            .expect("app connection")
    }

    /// A superuser connection to another database of the cluster (`postgres`, to change
    /// this one while nothing may connect to it).
    pub async fn admin_connection_to(&self, database: &str) -> AsyncPgConnection {
        AsyncPgConnection::establish(&admin_url(database))
            .await
            .expect("admin connection")
    }

    /// A connection as the superuser, to inspect what the application cannot see.
    pub async fn admin_connection(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&admin_url(&self.name))
            .await
            .expect("admin connection")
    }

    pub fn config(&self) -> Config {
        let mut config = Config::load(None).expect("default config");
        config.database.url = role_url("harmony_app", &self.name);
        config.database.owner_url = role_url("harmony_owner", &self.name);
        config.database.admin_url = admin_url("postgres");
        config.database.pool_size = 8;
        config.auth.jwt_secret = Some(SecretString::from(format!(
            "test-secret-{}",
            Uuid::new_v4()
        )));
        config.crypto.master_key = Some(SecretString::from(
            "dGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGVzLWxvbmctLS0",
        ));
        config.storage.path = std::env::temp_dir()
            .join("harmony-test-blobs")
            .join(&self.name);
        config.events.poll_interval_ms = 20;
        config
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ =
            std::fs::remove_dir_all(std::env::temp_dir().join("harmony-test-blobs").join(&name));
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = AsyncPgConnection::establish(&admin_url("postgres"))
                    .await
                    .ok()?;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            });
            Ok::<_, std::io::Error>(())
        })
        .join();
    }
}

/// The real server on a free port, with its own database.
#[derive(Debug)]
pub struct TestApp {
    pub base: String,
    pub kernel: Kernel,
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    // Dropped last: the database outlives the server.
    pub db: TestDb,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with a configuration adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        capture_logs();
        let db = TestDb::new().await;
        let mut config = db.config();
        adjust(&mut config);
        let kernel = harmony::start_kernel(config).await.expect("kernel");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server_kernel = kernel.clone();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            harmony_core::server::serve(server_kernel, harmony::api(), listener, shutdown).await
        });
        harmony_whatsapp::install_tls_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        TestApp {
            base,
            kernel,
            client,
            shutdown: Some(tx),
            db,
        }
    }

    /// A caller without credentials.
    pub fn anonymous(&self) -> Caller {
        Caller {
            app: self.base.clone(),
            client: self.client.clone(),
            token: None,
            tenant_id: Uuid::nil(),
            user_id: Uuid::nil(),
            email: String::new(),
        }
    }

    /// Signs up a clinic and returns its owner, logged in.
    pub async fn signup(&self, clinic: &str) -> Caller {
        let email = format!("owner-{}@clinic.test", Uuid::new_v4().simple());
        let response = self
            .anonymous()
            .post(
                "/api/v1/auth/signup",
                json!({
                    "clinic": {"name": clinic, "cnpj": "11.222.333/0001-81"},
                    "owner": {"name": "Dona Clínica", "email": email, "password": PASSWORD}
                }),
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "signup: {}",
            response.body
        );
        let tokens = &response.body["tokens"];
        Caller {
            app: self.base.clone(),
            client: self.client.clone(),
            token: Some(tokens["access_token"].as_str().expect("token").to_owned()),
            tenant_id: response.body["tenant_id"]
                .as_str()
                .expect("tenant")
                .parse()
                .expect("uuid"),
            user_id: response.body["user_id"]
                .as_str()
                .expect("user")
                .parse()
                .expect("uuid"),
            email,
        }
    }

    /// Invites a member with `roles` into `owner`'s clinic, lets them choose a password and
    /// logs them in.
    pub async fn member(&self, owner: &Caller, roles: &[&str]) -> Caller {
        let email = format!("{}-{}@clinic.test", roles[0], Uuid::new_v4().simple());
        let invited = owner
            .post(
                "/api/v1/members",
                json!({"email": email, "name": format!("Pessoa {}", roles[0]), "roles": roles}),
            )
            .await;
        assert_eq!(
            invited.status,
            StatusCode::CREATED,
            "invite: {}",
            invited.body
        );
        let token = invited.body["invitation_token"]
            .as_str()
            .expect("invitation token");
        let accepted = self
            .anonymous()
            .post(
                "/api/v1/auth/accept-invitation",
                json!({"token": token, "password": PASSWORD}),
            )
            .await;
        assert_eq!(accepted.status, StatusCode::OK, "accept: {}", accepted.body);
        Caller {
            app: self.base.clone(),
            client: self.client.clone(),
            token: Some(
                accepted.body["access_token"]
                    .as_str()
                    .expect("token")
                    .to_owned(),
            ),
            tenant_id: owner.tenant_id,
            user_id: invited.body["member"]["user_id"]
                .as_str()
                .expect("user")
                .parse()
                .expect("uuid"),
            email,
        }
    }

    /// The WhatsApp assistant's identity in `owner`'s clinic (people cannot be given the
    /// assistant role through the API, so it is set up directly).
    pub async fn assistant(&self, owner: &Caller) -> Caller {
        use diesel_async::SimpleAsyncConnection;
        let user = Uuid::now_v7();
        let tenant = owner.tenant_id;
        let mut admin = self.db.admin_connection().await;
        admin
            .batch_execute(&format!(
                "INSERT INTO users (id, email, name) VALUES ('{user}', 'assistant-{user}@clinic.test', 'Assistente');
                 INSERT INTO memberships (tenant_id, user_id) VALUES ('{tenant}', '{user}');
                 INSERT INTO role_assignments (tenant_id, user_id, role) VALUES ('{tenant}', '{user}', 'assistant');"
            ))
            .await
            .expect("assistant identity");
        self.kernel
            .rbac
            .set_roles(tenant, user, &[harmony_core::rbac::Role::Assistant])
            .await
            .expect("assistant role");
        let (token, _) = self
            .kernel
            .auth
            .issue_access_token(user, tenant)
            .expect("token");
        Caller {
            token: Some(token),
            user_id: user,
            email: String::new(),
            ..owner.clone()
        }
    }

    /// The usual cast: a clinic with an owner, an admin, a professional and a receptionist,
    /// and the owner of a second clinic.
    pub async fn actors(&self) -> Actors {
        let owner = self.signup("Clínica Aurora").await;
        let admin = self.member(&owner, &["admin"]).await;
        let professional = self.member(&owner, &["professional"]).await;
        let receptionist = self.member(&owner, &["receptionist"]).await;
        let other_owner = self.signup("Clínica Boreal").await;
        Actors {
            anonymous: self.anonymous(),
            owner,
            admin,
            professional,
            receptionist,
            other_owner,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Debug)]
pub struct Actors {
    pub anonymous: Caller,
    pub owner: Caller,
    pub admin: Caller,
    pub professional: Caller,
    pub receptionist: Caller,
    /// The owner of another clinic.
    pub other_owner: Caller,
}

/// Someone calling the API, with or without a token.
#[derive(Debug, Clone)]
pub struct Caller {
    app: String,
    client: reqwest::Client,
    pub token: Option<String>,
    pub tenant_id: Uuid,
    pub user_id: Uuid,
    pub email: String,
}

/// What a call got back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The problem `code` of an error reply.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl Caller {
    pub fn with_token(&self, token: &str) -> Caller {
        Caller {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.try_send(method, path, body).await.expect("request")
    }

    /// [`Caller::send`], with `None` when no answer came (the connection failed or the
    /// client's timeout passed).
    pub async fn try_send(&self, method: Method, path: &str, body: Option<Value>) -> Option<Reply> {
        let mut request = self.client.request(method, format!("{}{path}", self.app));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Some(Reply::from(request.send().await.ok()?).await)
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// A raw request for cases the helpers do not cover.
    pub fn raw(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.app));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// The next Monday at least a week away that is not a holiday, in São Paulo: a working
/// day for agenda tests, far enough for any minimum notice.
pub fn a_monday() -> chrono::NaiveDate {
    use chrono::Datelike;
    let mut day = chrono::Utc::now()
        .with_timezone(&chrono_tz::America::Sao_Paulo)
        .date_naive()
        + chrono::Duration::days(7);
    while day.weekday() != chrono::Weekday::Mon || harmony_agenda::holidays::on(day).is_some() {
        day += chrono::Duration::days(1);
    }
    day
}
