//! The reliability report: one row per defect of issue 16, with its figures, as JSON and Markdown.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::machine::Machine;

/// One measured row.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// When only some scenarios ran (`--only`): the run the other rows were kept from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_from: Option<String>,
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
        if let Some(kept) = &self.kept_from {
            let _ = writeln!(
                s,
                "Only some scenarios ran; the rows of the others are kept from {kept}.\n"
            );
        }
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

    /// For a run of some scenarios (`--only`): keeps the rows of the previous report in `dir`
    /// whose area this run did not measure, so `latest` still shows every scenario, and says so.
    pub fn keep_other_rows(&mut self, dir: &Path) {
        let Ok(text) = std::fs::read_to_string(dir.join("latest.json")) else {
            return;
        };
        let Ok(previous) = serde_json::from_str::<serde_json::Value>(&text) else {
            return;
        };
        let Ok(rows) = serde_json::from_value::<Vec<Row>>(previous["rows"].clone()) else {
            return;
        };
        let measured: Vec<String> = self.rows.iter().map(|r| r.area.clone()).collect();
        let kept: Vec<Row> = rows
            .into_iter()
            .filter(|r| !measured.contains(&r.area))
            .collect();
        if kept.is_empty() {
            return;
        }
        self.kept_from = Some(format!(
            "the report of {} (`{}`){}",
            previous["generated_at"].as_str().unwrap_or("?"),
            previous["command"].as_str().unwrap_or("?"),
            previous["kept_from"]
                .as_str()
                .map(|k| format!(", which kept others from {k}"))
                .unwrap_or_default()
        ));
        let new_rows = std::mem::replace(&mut self.rows, kept);
        self.rows.extend(new_rows);
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("latest.json"), serde_json::to_vec_pretty(self)?)?;
        std::fs::write(dir.join("latest.md"), self.markdown())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(area: &str, measured: &str) -> Row {
        Row {
            area: area.into(),
            scenario: "s".into(),
            measured: measured.into(),
            fixed: true,
            figures: serde_json::Value::Null,
        }
    }

    fn report(rows: Vec<Row>) -> ReliabilityReport {
        ReliabilityReport {
            generated_at: "then".into(),
            command: "cmd".into(),
            machine: Machine::probe("nginx", None, String::new()),
            rows,
            kept_from: None,
        }
    }

    #[test]
    fn a_partial_run_keeps_the_other_areas_and_replaces_its_own() {
        let dir = std::env::temp_dir().join(format!("reliability-report-{}", std::process::id()));
        report(vec![row("memory", "old"), row("PostgreSQL", "old")])
            .write(&dir)
            .unwrap();
        let mut partial = report(vec![row("PostgreSQL", "new")]);
        partial.keep_other_rows(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let rows: Vec<_> = partial
            .rows
            .iter()
            .map(|r| (r.area.as_str(), r.measured.as_str()))
            .collect();
        assert_eq!(rows, [("memory", "old"), ("PostgreSQL", "new")]);
        assert_eq!(
            partial.kept_from.as_deref(),
            Some("the report of then (`cmd`)")
        );
        assert!(partial.markdown().contains("kept from the report of then"));
    }
}
