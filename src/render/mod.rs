//! Output: plans for humans and for machines, from the one [`Plan`](crate::plan::Plan)
//! structure. Data goes to stdout; the callers send progress and errors to stderr.

pub mod plan;

use std::io::IsTerminal;

/// Whether to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Colour only on a terminal, and never when `NO_COLOR` is set (<https://no-color.org>).
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
