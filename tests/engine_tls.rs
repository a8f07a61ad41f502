//! The Engine API over TCP with TLS, as dockerd's `--tlsverify`: the stock
//! docker CLI with a client certificate of the CA drives swarmd; without one,
//! or without TLS, it is refused. Skips with a printed reason when no docker
//! client is installed.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType,
};
use swarm::testing::Patience;

/// Writes a CA, a server certificate for 127.0.0.1 and a client certificate
/// into `dir` (ca.pem, server-cert.pem, server-key.pem, cert.pem, key.pem).
fn certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = server.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("server-cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();

    let key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = client.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
}

/// The docker CLI against `host` with `args`, none of the caller's DOCKER_*
/// settings, and its client certificates looked for in `cert_path`.
fn docker(host: &str, cert_path: &Path, args: &[&str]) -> Output {
    Command::new("docker")
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CONTEXT")
        .env("DOCKER_CERT_PATH", cert_path)
        .args(["-H", host])
        .args(args)
        .output()
        .unwrap()
}

struct Swarmd(Child);

impl Drop for Swarmd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_docker_cli_needs_a_client_certificate_of_the_ca() {
    if Command::new("docker").arg("--version").output().is_err() {
        println!("skipped: no docker client installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let empty = dir.path().join("no-certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::create_dir_all(&empty).unwrap();
    certificates(&certs);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("tcp://127.0.0.1:{port}");
    let pem = |name: &str| certs.join(name).to_string_lossy().into_owned();
    let _swarmd = Swarmd(
        Command::new(env!("CARGO_BIN_EXE_swarmd"))
            .args(["--data-dir", &dir.path().join("node").to_string_lossy()])
            .args([
                "--api-addr",
                &host,
                "--runtime",
                "process",
                "--no-routing-mesh",
            ])
            .args(["--tlsverify", "--tlscacert", &pem("ca.pem")])
            .args(["--tlscert", &pem("server-cert.pem")])
            .args(["--tlskey", &pem("server-key.pem")])
            .args(["--log-level", "warn"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let verified = [
        "--tlsverify",
        "version",
        "--format",
        "{{.Server.APIVersion}}",
    ];
    let answered = Patience::within(Duration::from_secs(60))
        .every(Duration::from_millis(200))
        .poll_blocking(|| docker(&host, &certs, &verified).status.success());
    let out = docker(&host, &certs, &verified);
    assert!(
        answered,
        "docker --tlsverify with a client certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1.47");
    let info = docker(
        &host,
        &certs,
        &[
            "--tlsverify",
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}}",
        ],
    );
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&info.stdout).trim(), "inactive");

    // TLS without a client certificate, and plain HTTP: refused.
    let no_cert = docker(&host, &empty, &["--tls", "version"]);
    assert!(
        !no_cert.status.success(),
        "served without a client certificate: {}",
        String::from_utf8_lossy(&no_cert.stdout)
    );
    let plain = docker(&host, &empty, &["version"]);
    assert!(
        !plain.status.success(),
        "served over plain HTTP: {}",
        String::from_utf8_lossy(&plain.stdout)
    );
}
