//! One way to change a run's configuration by name, shared by command-line
//! overrides and `trainer scan` (so a scanned parameter means exactly what the
//! flag of the same name means).

use super::config::{Backend, Loss, Optimizer, RunConfig, Schedule};
use anyhow::{Context, Result, bail};

/// Names `set` understands.
pub const NAMES: &[&str] = &[
    "epochs",
    "lr",
    "batch_size",
    "l1",
    "l2",
    "dropout",
    "seed",
    "split_seed",
    "patience",
    "max_train",
    "momentum",
    "leaky_slope",
    "lr_decay",
    "lr_min",
    "warmup_epochs",
    "loss",
    "optimizer",
    "schedule",
    "backend",
    "filters",
    "kernel",
    "stride",
    "dilation",
    "pool",
    "pool_size",
    "padding",
    "batch_norm",
    "dense",
    "augment",
    "input_pool",
    "aux_inputs",
];

fn parse<T: std::str::FromStr>(name: &str, v: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    v.trim()
        .parse::<T>()
        .map_err(|e| anyhow::anyhow!("{name} = {v:?}: {e}"))
}

fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v.trim() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => bail!("{name} = {v:?}: expected true or false"),
    }
}

fn enum_value<T: clap::ValueEnum>(name: &str, v: &str) -> Result<T> {
    T::from_str(v.trim(), true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|x| x.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        anyhow::anyhow!("{name} = {v:?}: expected one of {}", names.join(", "))
    })
}

fn list(name: &str, v: &str) -> Result<Vec<usize>> {
    if v.trim().is_empty() || v.trim() == "none" {
        return Ok(Vec::new());
    }
    v.split([',', '-', '/'])
        .map(|s| parse::<usize>(name, s))
        .collect()
}

/// Auxiliary inputs by name (`exposure_s`, or `exposure`), comma-separated; `none` for none.
fn aux_list(name: &str, v: &str) -> Result<Vec<arch::model::AuxQuantity>> {
    use arch::model::AuxQuantity;
    if v.trim().is_empty() || v.trim() == "none" {
        return Ok(Vec::new());
    }
    v.split(',')
        .map(|s| match s.trim() {
            "exposure_s" | "exposure" => Ok(AuxQuantity::Exposure),
            other => bail!("{name} = {v:?}: unknown input {other:?}; known: exposure_s"),
        })
        .collect()
}

/// Set parameter `name` to `value` (text) in `cfg`.
pub fn set(cfg: &mut RunConfig, name: &str, value: &str) -> Result<()> {
    let (m, t) = (&mut cfg.model, &mut cfg.train);
    match name {
        "epochs" => t.epochs = parse(name, value)?,
        "lr" => t.lr = parse(name, value)?,
        "batch_size" => t.batch_size = parse(name, value)?,
        "l1" => t.l1 = parse(name, value)?,
        "l2" => t.l2 = parse(name, value)?,
        "seed" => t.seed = parse(name, value)?,
        "split_seed" => t.split_seed = parse(name, value)?,
        "patience" => t.patience = parse(name, value)?,
        "max_train" => t.max_train = parse(name, value)?,
        "momentum" => t.momentum = parse(name, value)?,
        "lr_decay" => t.lr_decay = parse(name, value)?,
        "lr_min" => t.lr_min = parse(name, value)?,
        "warmup_epochs" => t.warmup_epochs = parse(name, value)?,
        "augment" => t.augment = parse_bool(name, value)?,
        "loss" => t.loss = enum_value::<Loss>(name, value)?,
        "optimizer" => t.optimizer = enum_value::<Optimizer>(name, value)?,
        "schedule" => t.schedule = enum_value::<Schedule>(name, value)?,
        "backend" => t.backend = enum_value::<Backend>(name, value)?,
        "dropout" => m.dropout = parse(name, value)?,
        "leaky_slope" => m.leaky_slope = parse(name, value)?,
        "batch_norm" => m.batch_norm = parse_bool(name, value)?,
        "padding" => m.padding = value.trim().to_string(),
        "input_pool" => m.input_pool = parse(name, value)?,
        "dense" => m.dense = list(name, value)?,
        "aux_inputs" => m.aux_inputs = aux_list(name, value)?,
        "filters" => {
            let f = list(name, value)?;
            match f.len() {
                1 => m.blocks.iter_mut().for_each(|b| b.filters = f[0]),
                n if n == m.blocks.len() => {
                    m.blocks.iter_mut().zip(f).for_each(|(b, f)| b.filters = f)
                }
                n => bail!(
                    "filters = {value:?}: give one value or one per block ({} blocks), not {n}",
                    m.blocks.len()
                ),
            }
        }
        "kernel" | "stride" | "dilation" | "pool_size" => {
            let v: usize = parse(name, value)?;
            for b in &mut m.blocks {
                *match name {
                    "kernel" => &mut b.kernel,
                    "stride" => &mut b.stride,
                    "dilation" => &mut b.dilation,
                    _ => &mut b.pool_size,
                } = v;
            }
        }
        "pool" => m
            .blocks
            .iter_mut()
            .for_each(|b| b.pool = value.trim().to_string()),
        _ => bail!("unknown parameter {name:?}; known: {}", NAMES.join(", ")),
    }
    Ok(())
}

/// Parse `name=v1,v2,...` (a list) or `name=start:stop:steps` (a range, log-spaced if `log:` prefix).
pub fn scan_values(spec: &str) -> Result<(String, Vec<String>)> {
    let (name, vals) = spec
        .split_once('=')
        .with_context(|| format!("--param {spec:?}: expected name=values"))?;
    let name = name.trim().replace('-', "_");
    if !NAMES.contains(&name.as_str()) {
        bail!(
            "--param {spec:?}: unknown parameter {name:?}; known: {}",
            NAMES.join(", ")
        );
    }
    let (log, body) = match vals.strip_prefix("log:") {
        Some(b) => (true, b),
        None => (false, vals),
    };
    let parts: Vec<&str> = body.split(':').collect();
    let values = if parts.len() == 3 {
        let (a, b, n): (f64, f64, usize) = (
            parse("range start", parts[0])?,
            parse("range stop", parts[1])?,
            parse("range steps", parts[2])?,
        );
        if n < 2 || (log && (a <= 0.0 || b <= 0.0)) {
            bail!(
                "--param {spec:?}: a range needs at least 2 steps (and positive ends when log-spaced)"
            );
        }
        (0..n)
            .map(|i| {
                let f = i as f64 / (n - 1) as f64;
                let v = if log {
                    (a.ln() + f * (b.ln() - a.ln())).exp()
                } else {
                    a + f * (b - a)
                };
                format!("{v:.6}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string()
            })
            .collect()
    } else {
        // Lists of lists (filters per block) use '/' inside, ',' between values.
        body.split(',').map(|s| s.replace('/', ",")).collect()
    };
    Ok((name, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_name_is_settable() {
        let samples = [
            ("loss", "mse"),
            ("optimizer", "sgd"),
            ("schedule", "exponential"),
            ("backend", "ndarray"),
            ("augment", "false"),
            ("batch_norm", "true"),
            ("padding", "valid"),
            ("dense", "64,32"),
            ("filters", "8"),
            ("pool", "max"),
            ("pool_size", "4"),
            ("input_pool", "1"),
            ("aux_inputs", "exposure_s"),
        ];
        for name in NAMES {
            let mut cfg = RunConfig::default();
            let v = samples.iter().find(|s| s.0 == *name).map_or("2", |s| s.1);
            set(&mut cfg, name, v).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_ne!(cfg, RunConfig::default(), "{name} = {v} changed nothing");
        }
    }

    #[test]
    fn bad_values_are_named() {
        let mut cfg = RunConfig::default();
        assert!(
            set(&mut cfg, "lr", "fast")
                .unwrap_err()
                .to_string()
                .contains("lr")
        );
        assert!(
            set(&mut cfg, "loss", "huber")
                .unwrap_err()
                .to_string()
                .contains("nll")
        );
        assert!(
            set(&mut cfg, "filters", "1,2")
                .unwrap_err()
                .to_string()
                .contains("3 blocks")
        );
        assert!(
            set(&mut cfg, "colour", "red")
                .unwrap_err()
                .to_string()
                .contains("unknown parameter")
        );
    }

    #[test]
    fn scan_ranges_and_lists() {
        assert_eq!(
            scan_values("lr=log:1e-4:1e-2:3").unwrap().1,
            vec!["0.0001", "0.001", "0.01"]
        );
        assert_eq!(
            scan_values("dropout=0:0.4:3").unwrap().1,
            vec!["0", "0.2", "0.4"]
        );
        assert_eq!(
            scan_values("filters=8/16/16,16/32/32").unwrap().1,
            vec!["8,16,16", "16,32,32"]
        );
        assert!(scan_values("nonsense=1,2").is_err());
    }
}
