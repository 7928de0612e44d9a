//! A moto standalone server on a free loopback port, owned by one test, and SDK clients for it.
#![allow(dead_code)] // Shared by several test binaries; each uses a part.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_ssm::types::{ParameterTier, ParameterType};
use secretfs::provider::aws::call::Caller;
use secretfs::provider::aws::parameter_store::ParameterStore;
use secretfs::provider::aws::secrets_manager::SecretsManager;
use secretfs::provider::aws::{Bridge, DEFAULT_ATTEMPTS, DEFAULT_TIMEOUT};
use tokio::runtime::Runtime;

pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY: &str = "testing";

fn moto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}

/// The Python of moto's virtualenv (it also has Prometheus' text parser).
pub fn venv_python() -> PathBuf {
    moto_binary().with_file_name("python")
}

/// A running moto server; killed when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = Command::new(moto_binary());
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; the server dies with the test that started it.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start moto_server ({e}): run ./scripts/test.sh, which installs it into .venv")
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Environment for a `secretfs` process talking to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", ACCESS_KEY.to_string()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
    }
}

impl Moto {
    /// Environment for a `secretfs` process reaching this server through `endpoint` (a proxy).
    pub fn env_via(&self, endpoint: String) -> Vec<(&'static str, String)> {
        let mut env = self.env();
        env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
        env.push(("AWS_ENDPOINT_URL", endpoint));
        env
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SDK clients for seeding, and providers under test, on one runtime.
pub struct Aws {
    pub runtime: Runtime,
    pub ssm: aws_sdk_ssm::Client,
    pub sm: aws_sdk_secretsmanager::Client,
}

impl Aws {
    pub fn new(moto: &Moto) -> Aws {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let config = runtime.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(REGION))
                .endpoint_url(moto.endpoint())
                .credentials_provider(Credentials::new(ACCESS_KEY, ACCESS_KEY, None, None, "test"))
                .load(),
        );
        Aws { ssm: aws_sdk_ssm::Client::new(&config), sm: aws_sdk_secretsmanager::Client::new(&config), runtime }
    }

    pub fn put_parameter(&self, name: &str, value: &str, kind: ParameterType) {
        let tier = if value.len() > 4096 { ParameterTier::Advanced } else { ParameterTier::Standard };
        self.runtime
            .block_on(self.ssm.put_parameter().name(name).value(value).r#type(kind).tier(tier).overwrite(true).send())
            .unwrap_or_else(|e| panic!("put_parameter {name}: {e:?}"));
    }

    pub fn create_secret(&self, name: &str, value: &str) {
        self.runtime
            .block_on(self.sm.create_secret().name(name).secret_string(value).send())
            .unwrap_or_else(|e| panic!("create_secret {name}: {e:?}"));
    }

    pub fn put_secret_value(&self, name: &str, value: &str) {
        self.runtime
            .block_on(self.sm.put_secret_value().secret_id(name).secret_string(value).send())
            .unwrap_or_else(|e| panic!("put_secret_value {name}: {e:?}"));
    }

    pub fn delete_parameter(&self, name: &str) {
        let _ = self.runtime.block_on(self.ssm.delete_parameter().name(name).send());
    }

    pub fn create_binary_secret(&self, name: &str, value: &[u8]) {
        self.runtime
            .block_on(self.sm.create_secret().name(name).secret_binary(Blob::new(value)).send())
            .unwrap_or_else(|e| panic!("create_secret {name}: {e:?}"));
    }

    /// The value of parameter `name` as stored now (decrypted).
    pub fn parameter(&self, name: &str) -> String {
        let out = self.runtime.block_on(self.ssm.get_parameter().name(name).with_decryption(true).send()).unwrap();
        out.parameter().unwrap().value().unwrap().to_string()
    }

    /// The string value of secret `name` as stored now.
    pub fn secret(&self, name: &str) -> String {
        let out = self.runtime.block_on(self.sm.get_secret_value().secret_id(name).send()).unwrap();
        out.secret_string().unwrap().to_string()
    }

    pub fn parameter_store(&self) -> ParameterStore {
        ParameterStore::new(self.ssm.clone(), Bridge::new(self.runtime.handle().clone()), test_caller())
    }

    pub fn secrets_manager(&self) -> SecretsManager {
        SecretsManager::new(self.sm.clone(), Bridge::new(self.runtime.handle().clone()), test_caller())
    }
}

/// A caller that never limits the rate (moto does not throttle), with the default deadline and
/// attempts.
fn test_caller() -> Caller {
    Caller::new(10_000, DEFAULT_TIMEOUT, DEFAULT_ATTEMPTS)
}
