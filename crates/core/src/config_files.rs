//! The config as files: the main file, then its drop-ins (`config.d/*.toml`,
//! in name order: a Kata package drops its `[runtimes.kata]` there), merged
//! key by key and validated whole; each value remembers the file it came
//! from, for `criusd config show`. Reading the files is the daemon's.

use std::collections::BTreeMap;

use crate::config::{Config, ConfigError, Overrides, parse_error};

/// One file's text and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    pub source: &'a str,
    pub text: &'a str,
}

/// The merged config and the file of each value set (dotted key → file).
#[derive(Debug, Clone)]
pub struct Layered {
    pub config: Config,
    pub sources: BTreeMap<String, String>,
}

/// Merges `layers` in order (a later file's value wins; tables merge,
/// arrays are replaced whole), applies `overrides`, validates the result.
/// Each file must be a valid config fragment on its own (errors name the
/// file and the line).
pub fn parse_layers(layers: &[Layer<'_>], overrides: &Overrides) -> Result<Layered, ConfigError> {
    // The defaults first, as containerd decodes its config over them: a
    // drop-in that adds a handler keeps the default one.
    let mut merged = match toml::Value::try_from(Config::default()) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let mut sources = BTreeMap::new();
    for layer in layers {
        let in_file = |e: ConfigError| ConfigError::Parse(format!("{}: {e}", layer.source));
        let table: toml::Table =
            toml::from_str(layer.text).map_err(|e| in_file(parse_error(layer.text, &e)))?;
        merge(&mut merged, table, "", layer.source, &mut sources);
    }
    let mut config: Config = toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| merged_error(e.message().trim_end(), &sources))?;
    config.apply(overrides);
    config.validate()?;
    Ok(Layered { config, sources })
}

/// An error of the merged config, naming the file of the key it is about
/// (an unknown key, a value of the wrong type) when one can tell.
fn merged_error(message: &str, sources: &BTreeMap<String, String>) -> ConfigError {
    let quoted = message.split('`').nth(1).unwrap_or_default();
    let file = sources
        .iter()
        .find(|(k, _)| !quoted.is_empty() && (*k == quoted || k.ends_with(&format!(".{quoted}"))))
        .map(|(_, f)| f);
    match file {
        Some(f) => ConfigError::Parse(format!("{f}: {message}")),
        None => ConfigError::Parse(message.to_string()),
    }
}

fn merge(
    dst: &mut toml::Table,
    src: toml::Table,
    prefix: &str,
    source: &str,
    sources: &mut BTreeMap<String, String>,
) {
    for (key, value) in src {
        let path = format!("{prefix}{key}");
        match (dst.get_mut(&key), value) {
            (Some(toml::Value::Table(d)), toml::Value::Table(s)) => {
                merge(d, s, &format!("{path}."), source, sources)
            }
            (_, value) => {
                sources.retain(|k, _| k != &path && !k.starts_with(&format!("{path}.")));
                record(&value, &path, source, sources);
                dst.insert(key, value);
            }
        }
    }
}

/// Records `source` for every value at or below `path`.
fn record(value: &toml::Value, path: &str, source: &str, sources: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                record(v, &format!("{path}.{k}"), source, sources);
            }
        }
        _ => {
            sources.insert(path.to_string(), source.to_string());
        }
    }
}

/// The config in force as TOML, each value followed by the file that set
/// it (`# default` for what none did); secrets stay `<redacted>` (the
/// config serializes them so).
pub fn annotated(layered: &Layered) -> Result<String, ConfigError> {
    let value = toml::Value::try_from(&layered.config)
        .map_err(|e| ConfigError::Parse(format!("serializing the config: {e}")))?;
    let mut out = String::new();
    if let toml::Value::Table(t) = value {
        emit(&t, &mut Vec::new(), &layered.sources, &mut out);
    }
    Ok(out)
}

fn emit(
    table: &toml::Table,
    path: &mut Vec<String>,
    sources: &BTreeMap<String, String>,
    out: &mut String,
) {
    let (values, tables): (Vec<_>, Vec<_>) = table.iter().partition(|(_, v)| !v.is_table());
    if !path.is_empty() && !values.is_empty() {
        let header: Vec<String> = path.iter().map(|k| key(k)).collect();
        out.push_str(&format!("\n[{}]\n", header.join(".")));
    }
    for (k, v) in values {
        let dotted = path
            .iter()
            .chain([k])
            .cloned()
            .collect::<Vec<_>>()
            .join(".");
        let from = sources.get(&dotted).map_or("default", String::as_str);
        out.push_str(&format!("{} = {v}  # {from}\n", key(k)));
    }
    for (k, v) in tables {
        if let toml::Value::Table(t) = v {
            path.push(k.clone());
            emit(t, path, sources, out);
            path.pop();
        }
    }
}

/// A key as TOML writes it: bare when it can be, else quoted.
fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "default_runtime = \"runc\"\n[runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n[containerd]\nsnapshotter = \"overlayfs\"\n";
    const KATA: &str =
        "[runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\nprivileged = false\n";
    const LATER: &str = "[containerd]\nsnapshotter = \"native\"\n[runtimes.kata]\npod_annotations = [\"io.katacontainers.*\"]\n";

    fn layers<'a>(files: &[(&'a str, &'a str)]) -> Vec<Layer<'a>> {
        files
            .iter()
            .map(|(source, text)| Layer { source, text })
            .collect()
    }

    #[test]
    fn drop_ins_merge_over_the_main_file_in_order() -> Result<(), ConfigError> {
        let l = parse_layers(
            &layers(&[
                ("main.toml", MAIN),
                ("10-kata.toml", KATA),
                ("20-later.toml", LATER),
            ]),
            &Overrides::default(),
        )?;
        let c = &l.config;
        assert_eq!(c.containerd.snapshotter, "native", "the later file wins");
        let kata = &c.runtimes["kata"];
        assert_eq!(kata.runtime_type, "io.containerd.kata.v2");
        assert!(
            !kata.privileged,
            "tables merge: the earlier file's keys stay"
        );
        assert_eq!(kata.pod_annotations, ["io.katacontainers.*"]);
        assert!(c.runtimes.contains_key("runc"));
        // A drop-in adding a handler to the defaults keeps the default one.
        let only = parse_layers(
            &layers(&[("main.toml", ""), ("10-kata.toml", KATA)]),
            &Overrides::default(),
        )?;
        assert!(
            only.config.runtimes.contains_key("runc") && only.config.runtimes.contains_key("kata")
        );
        assert_eq!(l.sources["containerd.snapshotter"], "20-later.toml");
        assert_eq!(l.sources["runtimes.kata.runtime_type"], "10-kata.toml");
        assert_eq!(l.sources["default_runtime"], "main.toml");
        let shown = annotated(&l)?;
        assert!(
            shown.contains("snapshotter = \"native\"  # 20-later.toml"),
            "{shown}"
        );
        assert!(
            shown.contains("runtime_type = \"io.containerd.kata.v2\"  # 10-kata.toml"),
            "{shown}"
        );
        assert!(shown.contains("# default"), "{shown}");
        // What it shows is a config that parses to the same.
        let again = Config::parse(&shown)?;
        assert_eq!(again.runtimes["kata"].pod_annotations, kata.pod_annotations);
        Ok(())
    }

    #[test]
    fn a_bad_drop_in_is_refused_naming_its_file_and_the_whole_is_validated() {
        let typo = "[runtimes.kata]\nruntime_tpye = \"io.containerd.kata.v2\"\n";
        match parse_layers(
            &layers(&[("main.toml", MAIN), ("10-kata.toml", typo)]),
            &Overrides::default(),
        ) {
            Err(ConfigError::Parse(m)) => {
                assert!(m.starts_with("10-kata.toml: "), "{m}");
                assert!(m.contains("runtime_tpye"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        // Each file fine alone, the merge invalid: refused as a whole.
        let default_kata = "default_runtime = \"kata\"\n";
        assert!(matches!(
            parse_layers(
                &layers(&[("main.toml", MAIN), ("99.toml", default_kata)]),
                &Overrides::default()
            ),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn a_drop_in_that_is_no_toml_names_its_file_and_line() {
        match parse_layers(
            &layers(&[("main.toml", MAIN), ("bad.toml", "a = \n")]),
            &Overrides::default(),
        ) {
            Err(ConfigError::Parse(m)) => assert!(m.starts_with("bad.toml: line 1"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_stay_redacted_in_the_shown_config() -> Result<(), ConfigError> {
        let auth =
            "[images.auths.\"registry.example.com\"]\nusername = \"u\"\npassword = \"hunter2\"\n";
        let l = parse_layers(
            &layers(&[("main.toml", MAIN), ("50-auth.toml", auth)]),
            &Overrides::default(),
        )?;
        let shown = annotated(&l)?;
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("[images.auths.\"registry.example.com\"]"),
            "{shown}"
        );
        Ok(())
    }
}
