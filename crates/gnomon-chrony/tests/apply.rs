//! The plan applier against real chronyd: a fallback measured as
//! `noselect`, made selectable (and selected), removed; chronyd restarted
//! under it. Every chronyd runs with `-x` on private files and talks NTP on
//! loopback only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use gnomon_chrony::{
    apply::{ApplyError, PlanApplier},
    client::{ChronyClient, ClientConfig},
    sources_file::SourcesFile,
};
use gnomon_core::{
    chrony::{ChronySourceId, SelectionState, SourceReport},
    source::{SourceAddress, SourcePlan},
};
use gnomon_lab::chronyd::{free_loopback_udp_port, loopback_fallback_plan, Chronyd, ChronydSpec};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn start(spec: ChronydSpec) -> Chronyd {
    let name = spec.name.clone();
    Chronyd::start(spec).unwrap_or_else(|e| panic!("chronyd {name}: {e}"))
}

fn plan(port: u16, selectable: Option<bool>) -> SourcePlan {
    loopback_fallback_plan(port, selectable)
}

fn ours(sources: &[SourceReport]) -> Option<&SourceReport> {
    sources
        .iter()
        .find(|s| s.id == ChronySourceId::Address(LOOPBACK))
}

/// Polls chrony until `pred` holds for our source or `limit` passes.
async fn wait_for(
    client: &mut ChronyClient,
    limit: Duration,
    what: &str,
    pred: impl Fn(Option<&SourceReport>) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let sources = client.sources().await.unwrap();
        if pred(ours(&sources)) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{what} not seen within {limit:?}; last sources: {sources:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_is_measured_then_selected_then_removed() {
    let port = free_loopback_udp_port().unwrap();
    let _server = start(ChronydSpec::ntp_server("apply-server", port));
    let mut spec = ChronydSpec::client("apply-client");
    spec.with_sourcedir = true;
    let chronyd = start(spec);
    let mut client = ChronyClient::new(ClientConfig::new(chronyd.socket(), chronyd.client_dir()));
    let applier = PlanApplier::new(SourcesFile::new(chronyd.sources_dir()));

    // Standby: chrony measures the fallback but may never select it.
    let report = applier
        .apply(&mut client, &plan(port, Some(false)))
        .await
        .unwrap();
    assert!(report.written);
    wait_for(
        &mut client,
        Duration::from_secs(20),
        "noselect fallback answering",
        |s| s.is_some_and(|s| s.reach != 0 && s.offset.is_some()),
    )
    .await;
    let s = client.sources().await.unwrap();
    let fallback = ours(&s).unwrap();
    assert_eq!(fallback.noselect, Some(true));
    assert_ne!(fallback.state, SelectionState::Selected);
    assert!(!client.tracking().await.unwrap().synchronised());

    // Engaged: chrony < 4.5 drops the source on the first reload; the
    // applier sees it and reloads again.
    let report = applier
        .apply(&mut client, &plan(port, Some(true)))
        .await
        .unwrap();
    assert!(report.written);
    assert!(report.reloads <= gnomon_chrony::apply::MAX_RELOADS);
    let s = client.sources().await.unwrap();
    assert_eq!(ours(&s).and_then(|s| s.noselect), Some(false), "{report:?}");
    let took = wait_for(
        &mut client,
        Duration::from_secs(30),
        "fallback selected",
        |s| s.is_some_and(|s| s.state == SelectionState::Selected),
    )
    .await;
    eprintln!(
        "selected {took:?} after the apply ({} reloads, repaired: {:?})",
        report.reloads, report.repaired
    );

    // The same plan again writes nothing and changes nothing.
    let again = applier
        .apply(&mut client, &plan(port, Some(true)))
        .await
        .unwrap();
    assert!(!again.written);
    assert_eq!(again.reloads, 1);
    assert!(again.repaired.is_none());

    // Removed from the plan: gone from chrony.
    applier.apply(&mut client, &plan(port, None)).await.unwrap();
    assert!(ours(&client.sources().await.unwrap()).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_chronyd_gets_the_plan_back() {
    let port = free_loopback_udp_port().unwrap();
    let _server = start(ChronydSpec::ntp_server("restart-server", port));
    let mut spec = ChronydSpec::client("restart-client");
    spec.with_sourcedir = true;
    let mut chronyd = start(spec);
    let mut client = ChronyClient::new(ClientConfig::new(chronyd.socket(), chronyd.client_dir()));
    let applier = PlanApplier::new(SourcesFile::new(chronyd.sources_dir()));
    applier
        .apply(&mut client, &plan(port, Some(false)))
        .await
        .unwrap();

    chronyd.stop().unwrap();
    // While chronyd is away the file is written but the reload fails, with
    // an error that says chronyd is down.
    match applier.apply(&mut client, &plan(port, Some(true))).await {
        Err(ApplyError::Chrony(e)) => assert!(e.is_chronyd_down(), "{e}"),
        other => panic!("expected chronyd to be down, got {other:?}"),
    }
    chronyd.start_again().unwrap();
    // chronyd reads the sourcedir at start: it already has the new plan,
    // and the same client works again.
    wait_for(
        &mut client,
        Duration::from_secs(10),
        "source back after restart",
        |s| s.is_some_and(|s| s.noselect == Some(false)),
    )
    .await;
    let report = applier
        .apply(&mut client, &plan(port, Some(true)))
        .await
        .unwrap();
    assert!(!report.written);
    wait_for(
        &mut client,
        Duration::from_secs(30),
        "selected after restart",
        |s| s.is_some_and(|s| s.state == SelectionState::Selected),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_that_cannot_be_rendered_is_refused_before_chrony_sees_it() {
    let mut spec = ChronydSpec::client("refuse-client");
    spec.with_sourcedir = true;
    let chronyd = start(spec);
    let mut client = ChronyClient::new(ClientConfig::new(chronyd.socket(), chronyd.client_dir()));
    let applier = PlanApplier::new(SourcesFile::new(chronyd.sources_dir()));
    let mut bad = plan(123, Some(true));
    bad.sources[0].source.address = SourceAddress::Hostname("evil.example\nlocal stratum 1".into());
    match applier.apply(&mut client, &bad).await {
        Err(ApplyError::Render(e)) => assert!(e.to_string().contains("evil.example"), "{e}"),
        other => panic!("expected a render error, got {other:?}"),
    }
    assert!(
        applier.file().read_back().unwrap().is_none(),
        "nothing written"
    );
}
