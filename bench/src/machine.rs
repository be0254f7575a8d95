//! What machine the figures come from.

use std::process::Command;

use serde::Serialize;

#[derive(Debug, Clone, Serialize, Default)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub postgres: String,
    pub nginx: String,
    pub commit: String,
    pub server_cpus: String,
    pub client_cpus: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn first_output_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// This process's allowed CPUs (`Cpus_allowed_list` of /proc/self/status).
fn own_cpus() -> String {
    read("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

impl Machine {
    pub fn probe(nginx: &str, server_cpus: Option<&str>, postgres: String) -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let memory_gib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0 / 1024.0)
            .unwrap_or(0.0);
        Machine {
            cpu_model,
            cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count()
                .max(1),
            memory_gib,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            postgres,
            nginx: first_output_line(nginx, &["-v"]),
            commit: first_output_line("git", &["rev-parse", "--short", "HEAD"]),
            server_cpus: server_cpus.unwrap_or("any").to_string(),
            client_cpus: own_cpus(),
        }
    }
}
