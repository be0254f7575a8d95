//! The reliability report: one row per defect of issue 16, with its figures, as JSON and Markdown.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::machine::Machine;

/// One measured row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub area: String,
    pub scenario: String,
    pub measured: String,
    pub fixed: bool,
    /// The raw figures.
    pub figures: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReliabilityReport {
    pub generated_at: String,
    pub command: String,
    pub machine: Machine,
    pub rows: Vec<Row>,
}

impl ReliabilityReport {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# llmselect-edge reliability run\n");
        let m = &self.machine;
        let _ = writeln!(
            s,
            "{} · `{}` · {} × {} · {:.0} GiB · kernel {} · commit {}\n",
            self.generated_at, self.command, m.cpus, m.cpu_model, m.memory_gib, m.kernel, m.commit
        );
        let _ = writeln!(s, "| area | scenario | measured | fixed |");
        let _ = writeln!(s, "|---|---|---|---|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                r.area,
                r.scenario,
                r.measured,
                if r.fixed { "yes" } else { "**no**" }
            );
        }
        s
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("latest.json"), serde_json::to_vec_pretty(self)?)?;
        std::fs::write(dir.join("latest.md"), self.markdown())?;
        Ok(())
    }
}
