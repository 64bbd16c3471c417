//! The `[certs]` watch's IO side: reads each PEM file, decodes its first
//! certificate (the leaf) and hands the engine what it found, at start,
//! every `check-every` and at once after a SIGHUP changed the list. The
//! engine judges them (`gnomon_core::certs`).
//!
//! Only `CERTIFICATE` blocks are decoded; any other block (a private key
//! in a combined file) is skipped by its label, never parsed or logged.

use std::{fs::File, io::Read as _, path::Path};

use gnomon_core::{
    certs::{CertInfo, CertObservation, CertsConfig},
    engine::Input,
    time::WallTime,
};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, watch};
use x509_parser::pem::Pem;

/// A certificate file is a few kilobytes; a chain a few more.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Reads `path` and decodes its leaf certificate. Errors say what was being
/// done and with which file.
pub fn read_cert_file(path: &Path) -> Result<CertInfo, String> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| format!("opening {shown}: {e}"))?;
    let mut data = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("reading {shown}: {e}"))?;
    if data.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{shown} is larger than {} KiB: not a certificate file",
            MAX_FILE_BYTES / 1024
        ));
    }
    let mut leaf: Option<CertInfo> = None;
    let mut certificates = 0_usize;
    let mut other_labels: Vec<String> = Vec::new();
    for (i, block) in Pem::iter_from_buffer(&data).enumerate() {
        let pem = block.map_err(|e| format!("{shown}: PEM block {}: {e}", i + 1))?;
        if pem.label != "CERTIFICATE" {
            if !other_labels.contains(&pem.label) {
                other_labels.push(pem.label.clone());
            }
            continue;
        }
        certificates += 1;
        if leaf.is_some() {
            continue;
        }
        let cert = pem
            .parse_x509()
            .map_err(|e| format!("{shown}: certificate {certificates} is not valid X.509: {e}"))?;
        let validity = cert.validity();
        let fingerprint = Sha256::digest(&pem.contents)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        leaf = Some(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string().replace(':', "").to_uppercase(),
            fingerprint,
            not_before: WallTime::from_unix_secs(validity.not_before.timestamp()),
            not_after: WallTime::from_unix_secs(validity.not_after.timestamp()),
            certificates: 0,
        });
    }
    match leaf {
        Some(mut info) => {
            info.certificates = certificates;
            Ok(info)
        }
        None if other_labels.is_empty() => Err(format!(
            "{shown} holds no PEM certificate (no \"-----BEGIN CERTIFICATE-----\" block)"
        )),
        None => Err(format!(
            "{shown} holds no certificate, only {} (gnomon reads certificates, never keys: \
             name the certificate file)",
            other_labels.join(", ")
        )),
    }
}

/// Reads every file of `config`, on a blocking thread.
async fn read_all(config: &CertsConfig) -> Vec<CertObservation> {
    let files = config.files.clone();
    let read = tokio::task::spawn_blocking(move || {
        files
            .into_iter()
            .map(|path| {
                let read = read_cert_file(Path::new(&path));
                CertObservation { path, read }
            })
            .collect::<Vec<_>>()
    })
    .await;
    read.unwrap_or_else(|e| {
        config
            .files
            .iter()
            .map(|path| CertObservation {
                path: path.clone(),
                read: Err(format!("reading {path}: the reader thread failed: {e}")),
            })
            .collect()
    })
}

/// The watch: one read now, then every `check-every`, and at once when the
/// configuration changes (SIGHUP). Ends when the engine loop is gone.
pub async fn watch(mut config: watch::Receiver<CertsConfig>, inputs: mpsc::Sender<Input>) {
    loop {
        let current = config.borrow_and_update().clone();
        let read = read_all(&current).await;
        for obs in &read {
            if let Err(e) = &obs.read {
                tracing::debug!("certificate watch: {e}");
            }
        }
        if inputs.send(Input::Certificates(read)).await.is_err() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(current.check_every) => {}
            changed = config.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::fs;

    use super::*;

    /// A self-signed certificate for `name`, valid between the two Unix
    /// times, and its key, in PEM.
    pub(crate) fn make_cert(name: &str, from: i64, to: i64) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_certificate_and_its_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (leaf, key) = make_cert("dns.lan", 1_790_000_000, 1_800_000_000);
        let (ca, _) = make_cert("lan CA", 1_700_000_000, 1_900_000_000);
        let path = dir.path().join("chain.pem");
        // A combined file: key first, then the leaf and its CA.
        fs::write(&path, format!("{key}{leaf}{ca}")).unwrap();
        let info = read_cert_file(&path).unwrap();
        assert_eq!(info.subject, "CN=dns.lan");
        assert_eq!(info.not_before, WallTime::from_unix_secs(1_790_000_000));
        assert_eq!(info.not_after, WallTime::from_unix_secs(1_800_000_000));
        assert_eq!(info.certificates, 2);
        assert_eq!(info.fingerprint.len(), 64);
        assert!(!info.serial.is_empty() && !info.serial.contains(':'));

        // The fingerprint is the leaf's, and another certificate has another.
        let (other, _) = make_cert("dns.lan", 1_790_000_000, 1_800_000_000);
        let p2 = dir.path().join("other.pem");
        fs::write(&p2, other).unwrap();
        assert_ne!(read_cert_file(&p2).unwrap().fingerprint, info.fingerprint);
    }

    #[test]
    fn bad_files_are_errors_that_name_the_file_and_never_echo_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = read_cert_file(&missing).unwrap_err();
        assert!(
            e.starts_with(&format!("opening {}", missing.display())),
            "{e}"
        );

        let garbage = dir.path().join("garbage.pem");
        fs::write(&garbage, b"hello, not a certificate\n").unwrap();
        let e = read_cert_file(&garbage).unwrap_err();
        assert!(e.contains("holds no PEM certificate"), "{e}");

        let (_, key) = make_cert("dns.lan", 1_790_000_000, 1_800_000_000);
        let key_only = dir.path().join("key.pem");
        fs::write(&key_only, &key).unwrap();
        let e = read_cert_file(&key_only).unwrap_err();
        assert!(
            e.contains("only PRIVATE KEY") && e.contains("never keys"),
            "{e}"
        );
        let key_body: String = key.lines().nth(1).unwrap().to_owned();
        assert!(!e.contains(&key_body), "the key leaked into the message");

        let broken = dir.path().join("broken.pem");
        fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = read_cert_file(&broken).unwrap_err();
        assert!(e.contains("broken.pem"), "{e}");

        let big = dir.path().join("big.pem");
        fs::write(&big, vec![b'A'; 2 << 20]).unwrap();
        assert!(read_cert_file(&big).unwrap_err().contains("larger than"));
    }
}
