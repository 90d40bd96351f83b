//! This router's identity among replicas that share one database (docs/operations.md,
//! "Scale-out"): stamped on every `api_logs` row and, unless `VIDEO_RUNNER_ID` says otherwise,
//! the owner name of the video jobs this router claims.
//!
//! `REPLICA_ID` when set (Kubernetes: the pod name through the downward API), else
//! `<hostname>:<port>` with the port actually bound, so two routers started with `--port 0` on
//! one host never share an identity, and a router restarted on its fixed port keeps its own.

use crate::config::VarSource;

/// What the identity is made of, read from the environment with the other settings (the
/// port is known only once bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaName {
    /// `REPLICA_ID`, trimmed; `None` when unset or blank.
    replica_id: Option<String>,
    /// `HOSTNAME`, else the kernel's host name, else `localhost`.
    hostname: String,
}

impl Default for ReplicaName {
    fn default() -> Self {
        ReplicaName {
            replica_id: None,
            hostname: "localhost".into(),
        }
    }
}

impl ReplicaName {
    pub fn from_vars(vars: &dyn VarSource) -> ReplicaName {
        ReplicaName {
            replica_id: vars
                .get("REPLICA_ID")
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()),
            hostname: hostname(vars),
        }
    }

    /// The identity of a router listening on `port`.
    pub fn identity(&self, port: u16) -> String {
        self.replica_id
            .clone()
            .unwrap_or_else(|| format!("{}:{port}", self.hostname))
    }
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
        let identity =
            |env: &[(&str, &str)], port| ReplicaName::from_vars(&vars(env)).identity(port);
        assert_eq!(
            identity(&[("REPLICA_ID", " pod-7 "), ("HOSTNAME", "h")], 1),
            "pod-7"
        );
        assert_eq!(identity(&[("HOSTNAME", "h")], 43210), "h:43210");
        assert_eq!(
            identity(&[("REPLICA_ID", ""), ("HOSTNAME", "h")], 80),
            "h:80"
        );
    }
}
