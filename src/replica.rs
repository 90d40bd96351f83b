//! This router's identity among replicas that share one database (docs/operations.md,
//! "Scale-out"): stamped on every `api_logs` row and, unless `VIDEO_RUNNER_ID` says otherwise,
//! the owner name of the video jobs this router claims.
//!
//! `REPLICA_ID` when set (Kubernetes: the pod name through the downward API), else
//! `<hostname>:<port>` with the port actually bound, so two routers started with `--port 0` on
//! one host never share an identity, and a router restarted on its fixed port keeps its own.

use crate::config::VarSource;

/// The identity of a router listening on `port`.
pub fn identity(vars: &dyn VarSource, port: u16) -> String {
    vars.get("REPLICA_ID")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| format!("{}:{port}", hostname(vars)))
}

fn hostname(vars: &dyn VarSource) -> String {
    vars.get("HOSTNAME")
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_vars as vars;

    #[test]
    fn replica_id_wins_else_host_and_bound_port() {
        assert_eq!(
            identity(&vars(&[("REPLICA_ID", " pod-7 "), ("HOSTNAME", "h")]), 1),
            "pod-7"
        );
        assert_eq!(identity(&vars(&[("HOSTNAME", "h")]), 43210), "h:43210");
        assert_eq!(
            identity(&vars(&[("REPLICA_ID", ""), ("HOSTNAME", "h")]), 80),
            "h:80"
        );
    }
}
