//! Issue 15: CDI devices. A spec file the test writes (after criusd
//! started) names a character device and a mount; a container that asks
//! for the device by name sees both. An unknown device is refused, with
//! nothing left behind.

use std::sync::Arc;

use anyhow::{Context, ensure};
use crius_cri_api::v1;

use crate::Env;
use crate::containers::{container, create, start, wait_exited};
use crate::pods::{PodEnv, config, run};

crate::tests![a_cdi_device_and_its_mount_reach_the_container_and_unknown_ones_are_refused];

async fn a_cdi_device_and_its_mount_reach_the_container_and_unknown_ones_are_refused(
    env: Arc<Env>,
) -> anyhow::Result<()> {
    let specs = tempfile::tempdir()?;
    let vendor = tempfile::tempdir()?;
    std::fs::write(vendor.path().join("marker"), "from-the-vendor\n")?;
    let table = format!(
        "[cdi]\nspec_dirs = [{:?}]\n",
        specs.path().display().to_string()
    );
    let mut p = PodEnv::start_with(&env, None, "", &table).await?;
    let image = env.images.reference(crius_testkit::images::BUSYBOX);
    crate::images::pull(&mut p.cri, &image).await?;
    let logs = tempfile::tempdir()?;
    let mut pod_config = config("cdi");
    pod_config.log_directory = logs.path().display().to_string();
    let pod = run(&mut p.cri, pod_config).await?;
    // Written now: a device plugin's spec needs no restart.
    let spec = serde_json::json!({
        "cdiVersion": "0.6.0",
        "kind": "crius.test/dev",
        "devices": [{
            "name": "null",
            "containerEdits": {
                "env": ["CRIUS_CDI=yes"],
                "deviceNodes": [{ "path": "/dev/crius-null", "hostPath": "/dev/null" }],
                "mounts": [{ "hostPath": vendor.path(), "containerPath": "/vendor", "options": ["ro", "rbind"] }]
            }
        }]
    });
    std::fs::write(specs.path().join("crius-test.json"), spec.to_string())?;
    let script = "test -c /dev/crius-null && echo hi > /dev/crius-null && cat /vendor/marker && echo \"$CRIUS_CDI\"";
    let mut c = container("dev", &image, &["sh", "-c", script]);
    c.log_path = "dev.log".into();
    c.cdi_devices = vec![v1::CdiDevice {
        name: "crius.test/dev=null".into(),
    }];
    let id = create(&mut p.cri, &pod, c).await?;
    start(&mut p.cri, &id).await?;
    let st = wait_exited(&mut p.cri, &id).await?;
    let log = std::fs::read_to_string(logs.path().join("dev.log")).context("the log")?;
    ensure!(st.exit_code == 0, "{st:?}: {log}");
    ensure!(
        log.contains("from-the-vendor") && log.contains(" yes"),
        "{log}"
    );

    let before = p.containerd.container_list(&[]).await?.len();
    let mut unknown = container("nope", &image, &["true"]);
    unknown.cdi_devices = vec![v1::CdiDevice {
        name: "crius.test/dev=gpu7".into(),
    }];
    let err = p
        .cri
        .runtime
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(unknown.clone()),
            sandbox_config: Some(config("cdi")),
        })
        .await
        .expect_err("an unknown CDI device");
    ensure!(
        err.code() == tonic::Code::InvalidArgument
            && err.message().contains("config.CDI_devices[0].name")
            && err.message().contains("crius.test/dev=gpu7"),
        "{err:?}"
    );
    ensure!(
        p.containerd.container_list(&[]).await?.len() == before,
        "a record was left"
    );
    // Through the annotation kubelet's device plugins use, too.
    let mut by_annotation = container("dev2", &image, &["test", "-c", "/dev/crius-null"]);
    by_annotation
        .annotations
        .insert("cdi.k8s.io/test".into(), "crius.test/dev=null".into());
    let id2 = create(&mut p.cri, &pod, by_annotation).await?;
    start(&mut p.cri, &id2).await?;
    let st = wait_exited(&mut p.cri, &id2).await?;
    ensure!(st.exit_code == 0, "{st:?}");
    p.remove_all_and_check().await
}
