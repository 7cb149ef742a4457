//! The generator without a daemon: answers are simulated.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use crius_cri_api::v1;
use tonic::Code;

use super::super::Settings;
use super::super::call::{Call, Reply, Request, Rpc};
use super::super::state::{Board, Ids, WorkerState};
use super::Generator;

fn settings(seed: u64) -> Settings {
    let mut s = Settings::new(
        seed,
        "127.0.0.1:5000/crius-test/busybox:latest",
        "/tmp/crius-fuzz-unit",
    );
    s.spare_images = vec!["127.0.0.1:5000/crius-test/busybox:1.0".into()];
    s
}

/// A daemon that accepts every valid call and refuses every malformed one.
fn answer(call: &Call) -> Result<Reply, Code> {
    if !call.valid() {
        return Err(Code::InvalidArgument);
    }
    let id = format!("{:016x}{:048x}", call.worker, call.index);
    Ok(match &call.request {
        Request::RunPodSandbox(_) | Request::CreateContainer(_) => Reply::Id(id),
        Request::PodSandboxStatus(_) => Reply::State(v1::PodSandboxState::SandboxReady as i32),
        _ => Reply::Done,
    })
}

/// `n` calls of worker `w`, each answered by [`answer`]; with the state
/// and the board before each call.
fn simulate(seed: u64, w: usize, n: u64) -> (Vec<Call>, Vec<(WorkerState, Ids)>) {
    let s = settings(seed);
    let generator = Generator::new(&s, w);
    let board = Board::default();
    let mut state = WorkerState::default();
    let (mut calls, mut before) = (Vec::new(), Vec::new());
    for i in 0..n {
        let ids = board.snapshot();
        let call = generator.call(i, &state, &ids);
        before.push((state.clone(), ids));
        let a = answer(&call);
        state.apply(&call, &a);
        board.post(&call.request, &a);
        calls.push(call);
    }
    (calls, before)
}

/// The index of the first call that differs, if any.
fn first_difference(a: &[Call], b: &[Call]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|i| a.get(*i) != b.get(*i))
}

#[test]
fn same_seed_same_calls() {
    let (a, _) = simulate(42, 0, 600);
    let (b, _) = simulate(42, 0, 600);
    assert_eq!(first_difference(&a, &b), None);
}

#[test]
fn another_seed_or_worker_other_calls() {
    let (a, _) = simulate(42, 0, 200);
    assert!(first_difference(&a, &simulate(43, 0, 200).0).is_some());
    assert!(first_difference(&a, &simulate(42, 1, 200).0).is_some());
}

#[test]
fn a_call_is_made_again_from_seed_worker_index_and_state() {
    let (calls, before) = simulate(7, 2, 300);
    let generator = Generator::new(&settings(7), 2);
    for i in [0usize, 17, 150, 299] {
        let (state, ids) = &before[i];
        assert!(generator.call(i as u64, state, ids) == calls[i], "call {i}");
    }
}

#[test]
fn about_a_third_is_malformed() {
    let (calls, _) = simulate(1, 0, 3000);
    let bad = calls.iter().filter(|c| !c.valid()).count() as f64 / calls.len() as f64;
    assert!((0.28..0.42).contains(&bad), "{bad}");
}

#[test]
fn every_rpc_is_called() {
    let (calls, _) = simulate(3, 0, 4000);
    let seen: BTreeSet<Rpc> = calls.iter().map(|c| c.request.rpc()).collect();
    let missing: Vec<&Rpc> = Rpc::ALL.iter().filter(|r| !seen.contains(r)).collect();
    assert!(missing.is_empty(), "never called: {missing:?}");
}

#[test]
fn objects_stay_within_the_bounds() {
    let s = settings(5);
    let (_, before) = simulate(5, 0, 3000);
    let states: Vec<&WorkerState> = before.iter().map(|(s, _)| s).collect();
    for st in &states {
        assert!(st.pods.len() <= s.max_pods, "{} pods", st.pods.len());
        for p in &st.pods {
            assert!(
                p.containers.len() <= s.max_containers,
                "{} containers",
                p.containers.len()
            );
        }
    }
    assert!(states.iter().any(|st| st.pods.len() == s.max_pods));
}

/// `path` with `.` and `..` resolved lexically.
fn clean(path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn directories_are_made_only_in_the_scratch_directory() {
    for seed in 0..4 {
        let (calls, _) = simulate(seed, 0, 1500);
        for d in calls.iter().flat_map(|c| &c.mkdirs) {
            assert!(clean(d).starts_with("/tmp/crius-fuzz-unit"), "{d}");
        }
    }
}

#[test]
fn malformed_calls_name_their_flaw_and_valid_ones_have_none() {
    let (calls, _) = simulate(9, 0, 1000);
    for c in &calls {
        assert!(c.flaws.len() <= 1, "{:?}", c.flaws);
        assert!(c.flaws.iter().all(|f| f.contains(": ")), "{:?}", c.flaws);
    }
}

#[test]
fn skipped_fields_are_never_made_malformed() {
    let mut s = settings(11);
    s.skip = vec!["sandbox_config".into(), "metadata.name".into()];
    let generator = Generator::new(&s, 0);
    let mut state = WorkerState::default();
    let mut skipped = 0;
    for i in 0..3000 {
        let call = generator.call(i, &state, &Default::default());
        skipped += call
            .flaws
            .iter()
            .filter(|f| f.starts_with("sandbox_config:") || f.starts_with("metadata.name:"))
            .count();
        state.apply(&call, &answer(&call));
    }
    assert_eq!(skipped, 0);
}
