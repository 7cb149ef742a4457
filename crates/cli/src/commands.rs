//! One function per subcommand.

use std::time::Duration;

use anyhow::Context;
use crius_cri_api::v1;
use serde_json::{Value, json};

use crate::{Cli, Command, Output, client};

pub async fn run(cli: &Cli) -> anyhow::Result<()> {
    let mut cri = client::connect(&cli.socket_path(), Duration::from_secs(cli.timeout)).await?;
    match cli.command {
        Command::Version => version(cli, &mut cri).await,
        Command::Info => info(cli, &mut cri).await,
    }
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

async fn version(cli: &Cli, cri: &mut client::Cri) -> anyhow::Result<()> {
    let v = cri
        .runtime
        .version(v1::VersionRequest {
            version: "v1".into(),
        })
        .await
        .context("Version")?
        .into_inner();
    match cli.output {
        Output::Json => print_json(&json!({
            "client": { "name": "crius", "version": env!("CARGO_PKG_VERSION") },
            "runtimeName": v.runtime_name,
            "runtimeVersion": v.runtime_version,
            "runtimeApiVersion": v.runtime_api_version,
            "version": v.version,
        })),
        Output::Text => {
            println!("Client:          crius {}", env!("CARGO_PKG_VERSION"));
            println!("Runtime:         {} {}", v.runtime_name, v.runtime_version);
            println!("CRI API version: {}", v.runtime_api_version);
            Ok(())
        }
    }
}

/// Parses one JSON value of the verbose `Status` info map.
fn info_json(info: &std::collections::HashMap<String, String>, key: &str) -> Value {
    info.get(key)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

async fn info(cli: &Cli, cri: &mut client::Cri) -> anyhow::Result<()> {
    let status = cri
        .runtime
        .status(v1::StatusRequest { verbose: true })
        .await
        .context("Status")?
        .into_inner();
    let conditions: Vec<Value> = status
        .status
        .map(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({ "type": c.r#type, "status": c.status, "reason": c.reason, "message": c.message }))
        .collect();
    let version = info_json(&status.info, "version");
    let containerd = info_json(&status.info, "containerd");
    let handlers = info_json(&status.info, "runtimeHandlers");
    if cli.output == Output::Json {
        return print_json(&json!({
            "version": version,
            "conditions": conditions,
            "containerd": containerd,
            "runtimeHandlers": handlers,
            "podCIDR": status.info.get("podCIDR"),
            "config": info_json(&status.info, "config"),
        }));
    }
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    println!(
        "Runtime:     {} {} (CRI {})",
        s(&version["runtimeName"]),
        s(&version["runtimeVersion"]),
        s(&version["runtimeApiVersion"])
    );
    println!(
        "containerd:  {} at {} (namespace {})",
        containerd["version"].as_str().unwrap_or("not connected"),
        s(&containerd["address"]),
        s(&containerd["namespace"])
    );
    println!("Conditions:");
    for c in &conditions {
        let ok = c["status"].as_bool().unwrap_or(false);
        if ok {
            println!("  {:<14} true", s(&c["type"]));
        } else {
            println!(
                "  {:<14} false  {}: {}",
                s(&c["type"]),
                s(&c["reason"]),
                s(&c["message"])
            );
        }
    }
    println!("Runtime handlers (default: {}):", s(&handlers["default"]));
    for h in handlers["handlers"].as_array().into_iter().flatten() {
        println!("  {:<14} {}", s(&h["name"]), s(&h["runtime_type"]));
    }
    Ok(())
}
