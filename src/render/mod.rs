//! Output: plans for humans and for machines, from the one [`Plan`](crate::plan::Plan)
//! structure. Data goes to stdout; the callers send progress and errors to stderr.

pub mod plan;
pub mod progress;

use std::io::IsTerminal;

/// Whether to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Colour only on a terminal, and never when `NO_COLOR` is set (<https://no-color.org>).
    #[allow(
        clippy::disallowed_methods,
        reason = "asks whether stdout is a terminal; writes nothing"
    )]
    pub fn for_stdout(disabled: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
        Style {
            color: !disabled && !no_color && std::io::stdout().is_terminal(),
        }
    }

    pub fn plain() -> Self {
        Style { color: false }
    }

    pub(crate) fn paint(&self, color: Color, text: &str) -> String {
        if self.color {
            format!("\x1b[{}m{text}\x1b[0m", color.code())
        } else {
            text.to_string()
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Color {
    Green,
    Yellow,
    Red,
    Bold,
    Dim,
}

impl Color {
    fn code(self) -> &'static str {
        match self {
            Color::Green => "32",
            Color::Yellow => "33",
            Color::Red => "31",
            Color::Bold => "1",
            Color::Dim => "2",
        }
    }
}

/// Errors per resource, one line per distinct cause: a cause shared by several resources (no
/// credentials, an unreachable endpoint) is said once, followed by the resources it affects.
/// `errors` is (address, message); the result keeps the order in which causes first appear,
/// each line indented by two spaces, without a trailing newline.
pub fn grouped_errors(errors: &[(String, String)]) -> String {
    let mut causes: Vec<(&str, Vec<&str>)> = Vec::new();
    for (address, message) in errors {
        match causes.iter_mut().find(|(cause, _)| *cause == message) {
            Some((_, addresses)) => addresses.push(address),
            None => causes.push((message, vec![address])),
        }
    }
    let mut lines = Vec::new();
    for (cause, addresses) in causes {
        match addresses.as_slice() {
            [address] => lines.push(format!("  {address}: {cause}")),
            _ => {
                lines.push(format!("  {cause}"));
                lines.push(wrap(
                    &format!(
                        "(for {} resources: {})",
                        addresses.len(),
                        addresses.join(", ")
                    ),
                    "    ",
                    100,
                ));
            }
        }
    }
    lines.join("\n")
}

/// `text` wrapped at spaces to `width` columns, every line starting with `indent`.
pub(crate) fn wrap(text: &str, indent: &str, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::from(indent);
    for word in text.split(' ') {
        if line.len() > indent.len() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::replace(&mut line, String::from(indent)));
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::grouped_errors;

    fn errors(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(address, message)| (address.to_string(), message.to_string()))
            .collect()
    }

    #[test]
    fn an_error_shared_by_many_resources_is_said_once() {
        let text = grouped_errors(&errors(&[
            ("aws_vpc.main", "no AWS credentials"),
            ("aws_iam_role.eks_node", "no AWS credentials"),
            ("aws_eks_cluster.main", "AccessDenied"),
            ("aws_subnet.public[0]", "no AWS credentials"),
        ]));
        assert_eq!(text.matches("no AWS credentials").count(), 1, "{text}");
        assert_eq!(
            text,
            "  no AWS credentials\n    (for 3 resources: aws_vpc.main, aws_iam_role.eks_node, aws_subnet.public[0])\n  aws_eks_cluster.main: AccessDenied"
        );
    }

    #[test]
    fn a_long_list_of_affected_resources_wraps_at_100_columns() {
        let many: Vec<(String, String)> = (0..40)
            .map(|index| {
                (
                    format!("aws_subnet.private[{index}]"),
                    "throttled".to_string(),
                )
            })
            .collect();
        let text = grouped_errors(&many);
        assert!(text.lines().all(|line| line.len() <= 100), "{text}");
        assert_eq!(text.matches("aws_subnet.private[").count(), 40);
    }
}
