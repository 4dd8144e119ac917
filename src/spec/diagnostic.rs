//! Problems found in a stack file, each with its place in the file and the fix.

use std::fmt;
use std::path::{Path, PathBuf};

use super::yaml::SourceSpan;

/// One problem in a stack file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Where in the document, as a key path (`database.users[0].name`).
    pub path: String,
    pub span: SourceSpan,
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
    /// The value at `span` may be a secret (a password, a URL with one): it is masked when
    /// the line is shown.
    pub secret: bool,
}

/// Every problem found in one stack file, in file order, ready to print.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecErrors {
    pub file: PathBuf,
    source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl SpecErrors {
    pub fn new(file: &Path, source: &str, mut diagnostics: Vec<Diagnostic>) -> Self {
        diagnostics.sort_by_key(|diagnostic| diagnostic.span.start);
        SpecErrors {
            file: file.to_path_buf(),
            source: source.to_string(),
            diagnostics,
        }
    }

    /// Renders like a compiler: the message, `--> file:line:column`, the line with a caret
    /// under the place, and the fix.
    pub fn render(&self) -> String {
        let mut out = self.render_diagnostics("error");
        let count = self.diagnostics.len();
        out.push_str(&format!(
            "{} has {} problem{}; nothing was planned or changed\n",
            self.file.display(),
            count,
            if count == 1 { "" } else { "s" }
        ));
        out
    }

    /// Renders the diagnostics as warnings (`warning: ...`, same snippets), without the
    /// closing count: the run goes on.
    pub fn render_warnings(&self) -> String {
        self.render_diagnostics("warning")
    }

    fn render_diagnostics(&self, label: &str) -> String {
        let mut out = String::new();
        let lines: Vec<&str> = self.source.lines().collect();
        for diagnostic in &self.diagnostics {
            let start = diagnostic.span.start;
            out.push_str(&format!("{label}: {}\n", diagnostic.message));
            out.push_str(&format!(
                "  --> {}:{}:{}\n",
                self.file.display(),
                start.line,
                start.column
            ));
            if let Some(text) = start.line.checked_sub(1).and_then(|index| lines.get(index)) {
                let gutter = start.line.to_string().len();
                let masked = (start.column.saturating_sub(1))
                    ..(start.column.saturating_sub(1) + diagnostic.span.width);
                let text: String = text
                    .chars()
                    .take(200)
                    .enumerate()
                    .map(|(index, c)| {
                        if diagnostic.secret && masked.contains(&index) {
                            '*'
                        } else {
                            c
                        }
                    })
                    .collect();
                let pad = " ".repeat(start.column.saturating_sub(1).min(200));
                let width = diagnostic
                    .span
                    .width
                    .min(200usize.saturating_sub(start.column).max(1));
                out.push_str(&format!("{:gutter$} |\n", ""));
                out.push_str(&format!("{} | {}\n", start.line, text));
                out.push_str(&format!(
                    "{:gutter$} | {}{}\n",
                    "",
                    pad,
                    "^".repeat(width.max(1))
                ));
            }
            if !diagnostic.path.is_empty() {
                out.push_str(&format!("   = at: {}\n", diagnostic.path));
            }
            if let Some(help) = &diagnostic.help {
                out.push_str(&format!("   = help: {help}\n"));
            }
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for SpecErrors {}

/// The closest candidate to `word`, if one is close enough to be what was meant.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(word, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_key() {
        let keys = ["availability_zones", "cidr", "nat_gateways"];
        assert_eq!(
            did_you_mean("availabilty_zones", keys),
            Some("availability_zones")
        );
        assert_eq!(did_you_mean("nat_gateway", keys), Some("nat_gateways"));
        assert_eq!(did_you_mean("zzz", keys), None);
    }
}
