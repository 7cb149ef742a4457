//! One worker: generate, send, judge, probe, until the time is up.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tonic::Code;

use super::Settings;
use super::call::Call;
use super::exec::{self, Outcome};
use super::generate::Generator;
use super::report::{Report, code_name};
use super::state::{Board, WorkerState};
use super::traffic::Traffic;
use super::verdict::{Finding, Kind, classify};
use crate::client::{self, Cri};

/// What every worker shares.
pub struct Shared {
    /// The run's settings.
    pub settings: Settings,
    /// The daemon's socket.
    pub socket: PathBuf,
    /// Ids for all.
    pub board: Board,
    /// Which calls touched which object when.
    pub traffic: Traffic,
    /// Set when the daemon is gone: every worker stops.
    pub stop: AtomicBool,
    /// When the calls stop.
    pub until: Instant,
}

/// Runs worker `w` to the end; its counts and findings.
pub async fn work(w: usize, shared: Arc<Shared>) -> Report {
    let s = &shared.settings;
    let mut report = Report {
        seed: s.seed,
        ..Default::default()
    };
    let mut cri = match client::connect(&shared.socket).await {
        Ok(c) => c,
        Err(e) => {
            report.find(Finding::of_run(
                Kind::Unresponsive,
                s.seed,
                &format!("{e:#}"),
            ));
            shared.stop.store(true, Ordering::SeqCst);
            return report;
        }
    };
    let generator = Generator::new(s, w);
    let mut state = WorkerState::default();
    let mut index = 0;
    while Instant::now() < shared.until
        && !shared.stop.load(Ordering::SeqCst)
        && s.max_calls.is_none_or(|m| index < m)
    {
        let call = generator.call(index, &state, &shared.board.snapshot());
        step(&mut cri, &call, &shared, &mut report, &mut state).await;
        if !probe(&mut cri, &mut report, &call, &shared).await {
            break;
        }
        index += 1;
    }
    report
}

/// Sends `call`, counts and judges its answer, and takes it in.
async fn step(
    cri: &mut Cri,
    call: &Call,
    shared: &Shared,
    report: &mut Report,
    state: &mut WorkerState,
) {
    let s = &shared.settings;
    let (w, i, rpc) = (call.worker, call.index, call.request.rpc().name());
    let mut ids: Vec<String> = call.request.ids().into_iter().map(str::to_owned).collect();
    if let Some(pod) = ids.first().and_then(|id| shared.board.pod_of(id)) {
        ids.push(pod);
    }
    shared.traffic.begin(&ids, w, i, rpc, &call.summary());
    let outcome = exec::send(cri, call, s.call_timeout).await;
    shared.traffic.end(&ids, w, i, given_up(&outcome));
    if let Some(mut f) = judge(report, call, &outcome, s.seed) {
        f.concurrent = shared.traffic.overlapping(&ids, w, i);
        report.find(f);
    }
    if let Outcome::Answer(a) = &outcome {
        let coded = a.clone().map_err(|st| st.code());
        state.apply(call, &coded);
        shared.board.post(&call.request, &coded);
    }
}

/// Whether the client gave up on the call (the daemon may go on with it).
fn given_up(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Hang(_) => true,
        Outcome::Answer(Err(st)) => matches!(st.code(), Code::DeadlineExceeded | Code::Cancelled),
        Outcome::Answer(Ok(_)) => false,
    }
}

/// Counts the call; the finding its answer makes, if any.
fn judge(report: &mut Report, call: &Call, outcome: &Outcome, seed: u64) -> Option<Finding> {
    let rpc = call.request.rpc().name();
    let (answer, finding) = match outcome {
        Outcome::Answer(Ok(_)) => ("OK", None),
        Outcome::Answer(Err(st)) => (
            code_name(st.code()),
            classify(call.valid(), st.code(), st.message())
                .map(|k| Finding::of_call(k, call, seed, Some(st.code()), st.message())),
        ),
        Outcome::Hang(t) => {
            let msg = format!("no answer within {t:?}");
            (
                "HANG",
                Some(Finding::of_call(Kind::Hang, call, seed, None, &msg)),
            )
        }
    };
    report.count(rpc, answer, !call.valid());
    finding
}

/// Checks that the daemon still answers; false when it is gone (and the
/// run stops). A probe that fails at once (the connection broke, e.g. after
/// an answer the client refused) is tried again on a new connection
/// before the daemon is called unresponsive; one without an answer is not.
async fn probe(cri: &mut Cri, report: &mut Report, call: &Call, shared: &Shared) -> bool {
    let s = &shared.settings;
    let started = Instant::now();
    let Err(e) = exec::alive(cri, s.liveness_timeout).await else {
        return true;
    };
    let timed_out = started.elapsed() >= s.liveness_timeout;
    if !timed_out && reconnect(cri, shared, s.liveness_timeout).await {
        return true;
    }
    let f = Finding::of_call(
        Kind::Unresponsive,
        call,
        s.seed,
        None,
        &format!("after this call: {e}"),
    );
    report.find(f);
    // Slow, or gone? A second chance, longer.
    if reconnect(cri, shared, Duration::from_secs(30)).await {
        return true;
    }
    shared.stop.store(true, Ordering::SeqCst);
    false
}

/// A new connection that answers Version within `timeout` replaces `cri`.
async fn reconnect(cri: &mut Cri, shared: &Shared, timeout: Duration) -> bool {
    let Ok(mut fresh) = client::connect(&shared.socket).await else {
        return false;
    };
    if exec::alive(&mut fresh, timeout).await.is_err() {
        return false;
    }
    *cri = fresh;
    true
}
