//! Configuration: `config/default.toml`, overridden by `HARMONY__SECTION__KEY` variables.
//!
//! Secrets (the JWT signing key, the master encryption key, the database password) are
//! accepted only from the environment or from a file named in the environment, never from
//! the TOML file, and they live in [`SecretString`] so that no `Debug` or log prints them.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Every setting of a Harmony process.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub events: EventsConfig,
    #[serde(default)]
    pub crypto: CryptoConfig,
    pub storage: StorageConfig,
    #[serde(default)]
    pub dev: DevConfig,
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Each feature module's own section, `[modules.<name>]`, read by the module itself.
    #[serde(default, skip_serializing)]
    pub modules: ModuleSections,
}

/// The `[modules.<name>]` sections. In them, keys ending in `_secret`, `_token`, `_key` or
/// `_password` are secrets: refused in TOML files, accepted from the environment or from
/// a file named by the same key with `_file` appended.
#[derive(Clone, Default, Deserialize)]
pub struct ModuleSections(std::collections::BTreeMap<String, serde_json::Value>);

impl std::fmt::Debug for ModuleSections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// Whether a key of a module section names a secret.
fn is_secret_key(key: &str) -> bool {
    ["_secret", "_token", "_key", "_password"]
        .iter()
        .any(|s| key.ends_with(s))
}

impl ModuleSections {
    /// The section of module `name`, as the module's own type (defaults when absent).
    pub fn get<T: serde::de::DeserializeOwned + Default>(
        &self,
        name: &str,
    ) -> Result<T, serde_json::Error> {
        match self.0.get(name) {
            Some(value) => serde_json::from_value(value.clone()),
            None => Ok(T::default()),
        }
    }

    /// Sets a key of a module's section (tests, tools).
    pub fn set(&mut self, module: &str, key: &str, value: impl Into<serde_json::Value>) {
        let section = self
            .0
            .entry(module.to_owned())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        if let Some(map) = section.as_object_mut() {
            map.insert(key.to_owned(), value.into());
        }
    }

    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        for section in self.0.values_mut() {
            let Some(map) = section.as_object_mut() else {
                continue;
            };
            let files: Vec<(String, PathBuf)> = map
                .iter()
                .filter_map(|(k, v)| {
                    let base = k.strip_suffix("_file")?;
                    (is_secret_key(base) && v.is_string())
                        .then(|| (base.to_owned(), PathBuf::from(v.as_str().unwrap_or(""))))
                })
                .collect();
            for (key, path) in files {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| ConfigError::SecretFile { path, source })?;
                map.insert(key, serde_json::Value::String(text.trim().to_owned()));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub bind: String,
    /// The URL clients use to reach this server; printed at start-up.
    pub public_url: String,
    /// Largest request body accepted on any route, in bytes.
    pub body_limit_bytes: usize,
    /// Origins the browser app may call the API from.
    pub cors_allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DatabaseConfig {
    /// URL of the application role (no password: see `password`).
    pub url: String,
    /// URL of the role that owns the schema and runs migrations.
    pub owner_url: String,
    /// URL of a superuser, used only by `harmony setup` and the demo to create roles.
    pub admin_url: String,
    pub pool_size: usize,
    /// How long a request waits for a pooled connection before answering 503.
    pub acquire_timeout_ms: u64,
    /// Password of the application and owner roles, from the environment only.
    #[serde(default, skip_serializing)]
    pub password: Option<SecretString>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_days: i64,
    pub invitation_ttl_days: i64,
    pub login_window_secs: i64,
    pub login_max_failures_per_account: i32,
    pub login_max_failures_per_address: i32,
    /// HMAC key for access tokens (at least 32 bytes), from the environment only.
    #[serde(default, skip_serializing)]
    pub jwt_secret: Option<SecretString>,
    #[serde(default)]
    pub jwt_secret_file: Option<PathBuf>,
}

/// Encryption at rest.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct CryptoConfig {
    /// Base64 of the 32-byte master key that wraps the clinics' keys, from the environment.
    #[serde(default, skip_serializing)]
    pub master_key: Option<SecretString>,
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    /// During a rotation: the former master keys, comma-separated, still accepted for
    /// unwrapping until `harmony rewrap-keys` has run.
    #[serde(default, skip_serializing)]
    pub previous_master_keys: Option<SecretString>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StorageConfig {
    /// Directory of the local blob store (files are encrypted before they are written).
    pub path: PathBuf,
    /// Largest upload (an image or document body) accepted, in bytes.
    pub max_upload_bytes: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EventsConfig {
    pub poll_interval_ms: u64,
    pub batch_size: i64,
    /// After this many failed deliveries an event is parked for that subscriber.
    pub max_attempts: i32,
}

/// Where plugin libraries are and which of them may be loaded.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PluginsConfig {
    /// The directory holding the plugin libraries.
    pub dir: PathBuf,
    /// The libraries that may be loaded, each with its SHA-256. Any other file in `dir` is
    /// refused and logged.
    #[serde(default)]
    pub installed: Vec<InstalledPlugin>,
    /// Longest a plugin call (event, route, task) may take.
    pub call_timeout_ms: u64,
    /// Address-space limit of each plugin process.
    pub memory_limit_mb: u64,
    /// The `harmony` executable that hosts plugin processes (`harmony plugin-host`);
    /// empty: this very executable.
    #[serde(default)]
    pub host_executable: Option<PathBuf>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("plugins-enabled"),
            installed: Vec::new(),
            call_timeout_ms: 5_000,
            memory_limit_mb: 512,
            host_executable: None,
        }
    }
}

/// One plugin library that may be loaded.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct InstalledPlugin {
    /// File name inside `plugins.dir`.
    pub file: String,
    /// Hex SHA-256 of the file: a file that differs is refused.
    pub sha256: String,
    #[serde(default)]
    pub mode: PluginMode,
}

/// Where a plugin's code runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginMode {
    /// In a `harmony plugin-host` child process: a crash kills only the child.
    #[default]
    Process,
    /// Inside the server: faster, but a crash takes the server down. Trusted plugins only.
    InProcess,
}

/// Development mode: throwaway keys are generated when none are configured.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct DevConfig {
    #[serde(default)]
    pub mode: bool,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("`{0}` is a secret: set it through the environment or a file, not in a TOML file")]
    SecretInFile(String),
    #[error("cannot read secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("missing secret `{0}`: set HARMONY__{1} (or its _FILE variant), or run in dev mode")]
    MissingSecret(&'static str, &'static str),
    #[error("secret `{0}` is too weak: {1}")]
    WeakSecret(&'static str, &'static str),
}

const DEFAULTS: &str = include_str!("../../config/default.toml");
const SECRET_KEYS: [(&str, &str); 4] = [
    ("auth", "jwt_secret"),
    ("crypto", "master_key"),
    ("crypto", "previous_master_keys"),
    ("database", "password"),
];

impl Config {
    /// Loads the built-in defaults, then `config_file` if given, then the environment.
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new().merge(Toml::string(DEFAULTS));
        if let Some(path) = config_file {
            let file = Figment::from(Toml::file(path));
            for (section, key) in SECRET_KEYS {
                if file.find_value(&format!("{section}.{key}")).is_ok() {
                    return Err(ConfigError::SecretInFile(key.to_owned()));
                }
            }
            if let Ok(modules) = file.find_value("modules")
                && let Some(sections) = modules.as_dict()
            {
                for section in sections.values().filter_map(|v| v.as_dict()) {
                    if let Some(key) = section.keys().find(|k| is_secret_key(k)) {
                        return Err(ConfigError::SecretInFile(key.clone()));
                    }
                }
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("HARMONY__").split("__").lowercase(true));
        let mut config: Config = figment.extract().map_err(Box::new)?;
        config.read_secret_files()?;
        Ok(config)
    }

    fn read_secret_files(&mut self) -> Result<(), ConfigError> {
        fn read(
            path: &Option<PathBuf>,
            slot: &mut Option<SecretString>,
        ) -> Result<(), ConfigError> {
            if let Some(path) = path {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::SecretFile {
                        path: path.clone(),
                        source,
                    })?;
                *slot = Some(SecretString::from(text.trim().to_owned()));
            }
            Ok(())
        }
        read(&self.database.password_file, &mut self.database.password)?;
        read(&self.auth.jwt_secret_file, &mut self.auth.jwt_secret)?;
        read(&self.crypto.master_key_file, &mut self.crypto.master_key)?;
        self.modules.read_secret_files()
    }

    /// Makes sure the secrets are present, generating throwaway ones in dev mode.
    pub fn ensure_secrets(&mut self) -> Result<(), ConfigError> {
        let dev = self.dev.mode;
        for (slot, name, env, bytes) in [
            (
                &mut self.auth.jwt_secret,
                "jwt_secret",
                "AUTH__JWT_SECRET",
                48,
            ),
            (
                &mut self.crypto.master_key,
                "master_key",
                "CRYPTO__MASTER_KEY",
                32,
            ),
        ] {
            if slot.is_none() {
                if !dev {
                    return Err(ConfigError::MissingSecret(name, env));
                }
                tracing::warn!(
                    secret = name,
                    "DEVELOPMENT MODE: generated a throwaway secret; tokens and encrypted data \
                     will not survive a restart. Never run production like this."
                );
                *slot = Some(SecretString::from(crate::util::random_base64(bytes)));
            }
        }
        let jwt = self
            .auth
            .jwt_secret
            .as_ref()
            .map(|s| s.expose_secret().len());
        if jwt.unwrap_or(0) < 32 {
            return Err(ConfigError::WeakSecret(
                "jwt_secret",
                "use at least 32 characters",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_in_a_toml_file_are_refused() {
        let dir = std::env::temp_dir().join(format!("harmony-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("prod.toml");
        std::fs::write(
            &file,
            "[auth]\njwt_secret = \"in-a-file-that-gets-committed-0123456789\"\n",
        )
        .unwrap();
        let err = Config::load(Some(&file)).unwrap_err();
        assert!(
            matches!(err, ConfigError::SecretInFile(ref k) if k == "jwt_secret"),
            "{err}"
        );
    }

    #[test]
    fn without_dev_mode_missing_secrets_stop_the_start() {
        let mut config = Config::load(None).unwrap();
        config.auth.jwt_secret = None;
        config.dev.mode = false;
        assert!(matches!(
            config.ensure_secrets(),
            Err(ConfigError::MissingSecret("jwt_secret", _))
        ));
        config.dev.mode = true;
        config.ensure_secrets().unwrap();
        assert!(config.auth.jwt_secret.is_some() && config.crypto.master_key.is_some());
    }

    #[test]
    fn module_secrets_come_from_the_environment_or_a_file_only() {
        let dir = std::env::temp_dir().join(format!("harmony-config-m-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("prod.toml");
        std::fs::write(&file, "[modules.whatsapp]\napp_secret = \"committed\"\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err();
        assert!(
            matches!(err, ConfigError::SecretInFile(ref k) if k == "app_secret"),
            "{err}"
        );

        let secret = dir.join("secret");
        std::fs::write(&secret, "from-a-file\n").unwrap();
        std::fs::write(
            &file,
            format!(
                "[modules.whatsapp]\napp_secret_file = \"{}\"\ngraph_version = \"v24.0\"\n",
                secret.display()
            ),
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        #[derive(Default, serde::Deserialize)]
        struct Section {
            app_secret: Option<String>,
            graph_version: Option<String>,
        }
        let section: Section = config.modules.get("whatsapp").unwrap();
        assert_eq!(section.app_secret.as_deref(), Some("from-a-file"));
        assert_eq!(section.graph_version.as_deref(), Some("v24.0"));
        assert!(!format!("{config:?}").contains("from-a-file"));
    }

    #[test]
    fn secrets_never_print() {
        let mut config = Config::load(None).unwrap();
        config.auth.jwt_secret = Some(SecretString::from("super-secret-value-0123456789abcdef"));
        assert!(!format!("{config:?}").contains("super-secret-value"));
    }
}
