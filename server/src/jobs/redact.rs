//! The engine's words without the worker's paths: what people see of a
//! run (its events, its failure reason) names files by what they are —
//! `checkpoint-30`, `train.jsonl`, the model's name — never where this
//! machine keeps them.

use hone_protocol::Event;
use std::path::Path;

/// Path prefixes and what they become, longest first.
#[derive(Clone, Debug, Default)]
pub struct Redact(Vec<(String, String)>);

impl Redact {
    /// For one attempt: its output folder (`out`, whose files are named by
    /// their path inside it), its folder (`dir`: the data and settings),
    /// the model folder it trains (shown as `model_name`), and the
    /// folders above them.
    pub fn new(out: &Path, dir: &Path, model: &Path, model_name: &str, roots: &[&Path]) -> Redact {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut add = |p: &Path, with: &str| {
            let p = p.display().to_string();
            let p = p.trim_end_matches('/');
            if !p.is_empty() {
                pairs.push((format!("{p}/"), with.to_owned()));
                pairs.push((p.to_owned(), with.trim_end_matches('/').to_owned()));
            }
        };
        add(out, "");
        add(dir, "");
        add(model, &format!("{model_name}/"));
        for root in roots {
            add(root, "");
        }
        // The longest first, so a folder inside another is named by itself.
        pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Redact(pairs)
    }

    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for (from, to) in &self.0 {
            if out.contains(from.as_str()) {
                out = out.replace(from.as_str(), to);
            }
        }
        out
    }

    /// An event as people may see it.
    pub fn event(&self, e: &Event) -> Event {
        let mut e = e.clone();
        match &mut e {
            Event::Checkpoint { path, .. } | Event::Resumed { path, .. } => *path = self.text(path),
            Event::Failed { reason, .. } => *reason = self.text(reason),
            _ => {}
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hone_protocol::Cause;

    fn redact() -> Redact {
        Redact::new(
            Path::new("/srv/hone/work/job-3-1/out"),
            Path::new("/srv/hone/work/job-3-1"),
            Path::new("/srv/hone/models/llama-3"),
            "llama-3",
            &[Path::new("/srv/hone/work"), Path::new("/srv/hone/models")],
        )
    }

    #[test]
    fn paths_become_the_names_of_what_they_are() {
        let r = redact();
        assert_eq!(
            r.text("reading /srv/hone/work/job-3-1/train.jsonl: line 4"),
            "reading train.jsonl: line 4"
        );
        assert_eq!(
            r.text("/srv/hone/models/llama-3/config.json: missing field"),
            "llama-3/config.json: missing field"
        );
        assert_eq!(
            r.text("cannot write /srv/hone/work/job-3-1/out/checkpoint-30/adapter.safetensors"),
            "cannot write checkpoint-30/adapter.safetensors"
        );
        assert_eq!(r.text("no path here"), "no path here");
    }

    #[test]
    fn events_that_carry_paths_or_reasons_are_rewritten() {
        let r = redact();
        let e = r.event(&Event::Checkpoint {
            step: 30,
            path: "/srv/hone/work/job-3-1/out/checkpoint-30".into(),
        });
        assert!(
            matches!(e, Event::Checkpoint { ref path, .. } if path == "checkpoint-30"),
            "{e:?}"
        );
        let e = r.event(&Event::Failed {
            reason: "loading /srv/hone/models/llama-3: no weights".into(),
            cause: Cause::System,
        });
        assert!(
            matches!(e, Event::Failed { ref reason, .. } if reason == "loading llama-3: no weights"),
            "{e:?}"
        );
    }
}
