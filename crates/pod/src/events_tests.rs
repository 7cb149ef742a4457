//! Events through a pod's whole life, on the fakes.

use std::sync::Arc;

use crius_core::Result;
use crius_core::container::ContainerState;
use crius_core::sandbox::SandboxState;
use tokio::sync::broadcast;

use crate::events::{BUFFER, EventKind, PodEvent};
use crate::tests::env;

/// The events received so far, as `(id, kind)`.
fn drain(rx: &mut broadcast::Receiver<Arc<PodEvent>>, into: &mut Vec<Arc<PodEvent>>) {
    while let Ok(e) = rx.try_recv() {
        into.push(e);
    }
}

fn kinds(events: &[Arc<PodEvent>]) -> Vec<(String, EventKind)> {
    events
        .iter()
        .map(|e| (e.container_id.clone(), e.kind))
        .collect()
}

#[tokio::test]
async fn each_transition_of_a_pod_with_two_containers_is_one_event_with_the_whole_pod() -> Result<()>
{
    let e = env();
    let (now, mut rx) = e.pods.subscribe_events();
    assert!(now.is_empty(), "nothing there yet: {now:?}");
    let pod = e.run("web").await?;
    let a = e.create(&pod, "a").await?;
    let b = e.create(&pod, "b").await?;
    e.pods.start_container(&a).await?;
    e.pods.start_container(&b).await?;
    e.fake.exit(&a, 3);
    let mut got = Vec::new();
    for _ in 0..1000 {
        drain(&mut rx, &mut got);
        if got
            .iter()
            .any(|x| x.container_id == a && x.kind == EventKind::Stopped)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    e.pods.stop(&e.config, &pod).await?;
    e.pods.remove_container(&e.config, &a).await?;
    e.pods.remove(&e.config, &pod).await?;
    drain(&mut rx, &mut got);
    use EventKind::*;
    let expected = [
        (pod.clone(), Created),
        (pod.clone(), Started),
        (a.clone(), Created),
        (b.clone(), Created),
        (a.clone(), Started),
        (b.clone(), Started),
        (a.clone(), Stopped),
        (b.clone(), Stopped),
        (pod.clone(), Stopped),
        (a.clone(), Deleted),
        (b.clone(), Deleted),
        (pod.clone(), Deleted),
    ];
    assert_eq!(kinds(&got), expected, "each transition once, in order");
    // Each event carries the whole pod as it was then.
    let at = |id: &str, k| got.iter().find(|x| x.container_id == id && x.kind == k);
    let stopped_a = at(&a, Stopped).expect("a stopped");
    let sandbox = stopped_a.sandbox.as_ref().expect("the pod's status");
    assert_eq!(sandbox.state, SandboxState::Ready);
    let states: Vec<_> = stopped_a
        .containers
        .iter()
        .map(|(m, s)| (m.id.clone(), s.state, s.exit_code))
        .collect();
    assert_eq!(
        states,
        [
            (a.clone(), ContainerState::Exited, 3),
            (b.clone(), ContainerState::Running, 0)
        ]
    );
    let deleted = at(&pod, Deleted).expect("the pod deleted");
    let last = deleted
        .sandbox
        .as_ref()
        .expect("its last status, for kubelet's cache");
    assert_eq!(
        (last.meta.id.as_str(), last.state),
        (pod.as_str(), SandboxState::NotReady)
    );
    assert!(deleted.containers.is_empty(), "{:?}", deleted.containers);
    Ok(())
}

#[tokio::test]
async fn a_new_subscriber_first_learns_what_is_there_now() -> Result<()> {
    let e = env();
    let pod = e.run("web").await?;
    let a = e.create(&pod, "a").await?;
    let b = e.create(&pod, "b").await?;
    e.pods.start_container(&b).await?;
    let (now, _rx) = e.pods.subscribe_events();
    let got: Vec<_> = now
        .iter()
        .map(|x| (x.container_id.clone(), x.kind))
        .collect();
    assert_eq!(
        got,
        [
            (pod.clone(), EventKind::Started),
            (a.clone(), EventKind::Created),
            (b.clone(), EventKind::Started)
        ]
    );
    assert!(
        now.iter()
            .all(|x| x.containers.len() == 2 && x.sandbox.is_some())
    );
    Ok(())
}

#[tokio::test]
async fn a_subscriber_that_never_reads_loses_its_place_and_holds_nothing_up() -> Result<()> {
    let e = env();
    let (_, mut slow) = e.pods.subscribe_events();
    let pod = e.run("web").await?;
    // Far more transitions than the ring holds; none waits for the reader.
    for i in 0..(BUFFER / 2 + 10) {
        let id = e.create(&pod, &format!("c{i}")).await?;
        e.pods.remove_container(&e.config, &id).await?;
    }
    let (_, mut fresh) = e.pods.subscribe_events();
    match slow.try_recv() {
        Err(broadcast::error::TryRecvError::Lagged(missed)) => assert!(missed > 0),
        other => panic!("expected the slow subscriber to have lagged: {other:?}"),
    }
    // Others go on.
    e.create(&pod, "last").await?;
    assert!(matches!(fresh.try_recv(), Ok(x) if x.kind == EventKind::Created));
    Ok(())
}
