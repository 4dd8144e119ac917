//! A YAML document as a tree of nodes that remember where they stand in the file.
//!
//! serde deserialisers stop at the first error and forget positions; the validator needs every
//! node's line and column to report all problems in one run. The tree is built from the event
//! stream of `saphyr-parser` (maintained, YAML 1.2) without recursion, so no input can overflow
//! the stack. Aliases are expanded under a node budget, so a "billion laughs" document is an
//! error, not an out-of-memory.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Most nodes a document may expand to (aliases included). The largest stacks we test
/// (10,000 resources) use well under a tenth of this.
const NODE_BUDGET: usize = 2_000_000;

/// Deepest nesting of lists and mappings. A stack file needs about five levels; the cap keeps
/// the recursive `Drop`/`Clone` of the tree far from the thread's stack limit.
const MAX_DEPTH: usize = 64;

/// A position in the source: 1-based line, 1-based column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// A range of the source, start inclusive. `width` counts characters on the start line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SourceSpan {
    pub start: Location,
    pub width: usize,
}

impl SourceSpan {
    fn from_parser(span: Span) -> Self {
        let start = Location {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        let width = if span.end.line() == span.start.line() {
            span.end.col().saturating_sub(span.start.col()).max(1)
        } else {
            1
        };
        SourceSpan { start, width }
    }

    pub fn point(line: usize, column: usize) -> Self {
        SourceSpan {
            start: Location { line, column },
            width: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub span: SourceSpan,
    pub kind: NodeKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    Scalar { value: String, quoted: bool },
    Sequence(Vec<Node>),
    Mapping(Vec<(Node, Node)>),
}

impl Node {
    /// A short name of what this node is, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { value, quoted } => {
                if *quoted {
                    "a string"
                } else if is_null(value) {
                    "nothing (null)"
                } else if value == "true" || value == "false" {
                    "a boolean"
                } else if value.parse::<f64>().is_ok() {
                    "a number"
                } else {
                    "a string"
                }
            }
            NodeKind::Sequence(_) => "a list",
            NodeKind::Mapping(_) => "a mapping",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { value, quoted: false } if is_null(value))
    }

    /// The value under `key` when this node is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        let NodeKind::Mapping(entries) = &self.kind else {
            return None;
        };
        entries.iter().find_map(|(name, value)| {
            matches!(&name.kind, NodeKind::Scalar { value: name, .. } if name == key)
                .then_some(value)
        })
    }
}

fn is_null(value: &str) -> bool {
    matches!(value, "" | "~" | "null" | "Null" | "NULL")
}

/// A syntax error: where and what.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub span: SourceSpan,
    pub message: String,
}

enum Frame {
    Sequence {
        span: SourceSpan,
        anchor: usize,
        items: Vec<Node>,
    },
    Mapping {
        span: SourceSpan,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

/// Parses the first document of `source`. An empty file parses to a null scalar.
/// A second document is an error: a stack file is one document.
pub fn parse(source: &str) -> Result<Node, SyntaxError> {
    let mut parser = Parser::new_from_str(source);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let mut budget = NODE_BUDGET;

    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|error| SyntaxError {
            span: SourceSpan::point(error.marker().line().max(1), error.marker().col() + 1),
            message: format!("invalid YAML: {}", error.info()),
        })?;
        let here = SourceSpan::from_parser(span);
        let finished: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        span: here,
                        message: "a stack file holds one YAML document; found a second one \
                                  (remove the `---` line and what follows, or split the file)"
                            .into(),
                    });
                }
                None
            }
            Event::Alias(id) => {
                let node = anchors.get(&id).cloned().ok_or_else(|| SyntaxError {
                    span: here,
                    message: "alias refers to an unknown anchor".into(),
                })?;
                let size = count_nodes(&node);
                if size > budget {
                    return Err(too_large(here));
                }
                budget -= size;
                Some((node, 0))
            }
            Event::Scalar(value, style, anchor, _tag) => {
                budget = spend(budget, here)?;
                let quoted = !matches!(style, ScalarStyle::Plain);
                Some((
                    Node {
                        span: here,
                        kind: NodeKind::Scalar {
                            value: value.into_owned(),
                            quoted,
                        },
                    },
                    anchor,
                ))
            }
            Event::SequenceStart(anchor, _tag) => {
                budget = spend(budget, here)?;
                check_depth(stack.len(), here)?;
                stack.push(Frame::Sequence {
                    span: here,
                    anchor,
                    items: Vec::new(),
                });
                None
            }
            Event::MappingStart(anchor, _tag) => {
                budget = spend(budget, here)?;
                check_depth(stack.len(), here)?;
                stack.push(Frame::Mapping {
                    span: here,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Sequence {
                    span,
                    anchor,
                    items,
                }) => Some((
                    Node {
                        span,
                        kind: NodeKind::Sequence(items),
                    },
                    anchor,
                )),
                _ => return Err(unbalanced(here)),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Mapping {
                    span,
                    anchor,
                    entries,
                    ..
                }) => Some((
                    Node {
                        span,
                        kind: NodeKind::Mapping(entries),
                    },
                    anchor,
                )),
                _ => return Err(unbalanced(here)),
            },
        };

        if let Some((node, anchor)) = finished {
            if anchor != 0 {
                anchors.insert(anchor, node.clone());
            }
            match stack.last_mut() {
                None => root = Some(node),
                Some(Frame::Sequence { items, .. }) => items.push(node),
                Some(Frame::Mapping {
                    entries,
                    pending_key,
                    ..
                }) => match pending_key.take() {
                    None => *pending_key = Some(node),
                    Some(key) => entries.push((key, node)),
                },
            }
        }
    }

    Ok(root.unwrap_or(Node {
        span: SourceSpan::point(1, 1),
        kind: NodeKind::Scalar {
            value: String::new(),
            quoted: false,
        },
    }))
}

fn spend(budget: usize, span: SourceSpan) -> Result<usize, SyntaxError> {
    budget.checked_sub(1).ok_or_else(|| too_large(span))
}

fn check_depth(depth: usize, span: SourceSpan) -> Result<(), SyntaxError> {
    if depth >= MAX_DEPTH {
        return Err(SyntaxError {
            span,
            message: format!("lists and mappings nest more than {MAX_DEPTH} levels deep"),
        });
    }
    Ok(())
}

fn too_large(span: SourceSpan) -> SyntaxError {
    SyntaxError {
        span,
        message: format!(
            "document expands to more than {NODE_BUDGET} nodes (aliases included); \
             a stack file this large is almost certainly an alias bomb"
        ),
    }
}

fn unbalanced(span: SourceSpan) -> SyntaxError {
    SyntaxError {
        span,
        message: "invalid YAML: unbalanced collection".into(),
    }
}

fn count_nodes(node: &Node) -> usize {
    let mut count = 0;
    let mut pending = vec![node];
    while let Some(node) = pending.pop() {
        count += 1;
        match &node.kind {
            NodeKind::Scalar { .. } => {}
            NodeKind::Sequence(items) => pending.extend(items),
            NodeKind::Mapping(entries) => {
                for (key, value) in entries {
                    pending.push(key);
                    pending.push(value);
                }
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let node = parse("a: 1\nbb:\n  c: [x, \"y\"]\n").unwrap();
        let NodeKind::Mapping(entries) = &node.kind else {
            panic!("not a mapping")
        };
        assert_eq!(entries[1].0.span.start, Location { line: 2, column: 1 });
        let NodeKind::Mapping(inner) = &entries[1].1.kind else {
            panic!("not a mapping")
        };
        assert_eq!(inner[0].0.span.start, Location { line: 3, column: 3 });
        let NodeKind::Sequence(items) = &inner[0].1.kind else {
            panic!("not a list")
        };
        assert_eq!(
            items[1].kind,
            NodeKind::Scalar {
                value: "y".into(),
                quoted: true
            }
        );
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..9 {
            let previous = format!("*a{}", level - 1);
            doc.push_str(&format!(
                "a{level}: &a{level} [{}]\n",
                vec![previous; 10].join(", ")
            ));
        }
        let error = parse(&doc).unwrap_err();
        assert!(error.message.contains("alias bomb"), "{}", error.message);
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let doc = "[".repeat(100_000);
        assert!(parse(&doc).is_err());
        let doc = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000));
        assert!(
            parse(&doc).is_err(),
            "the parser's own recursion limit refuses it"
        );
        let doc = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let error = parse(&doc).unwrap_err();
        assert!(error.message.contains("nest"), "{}", error.message);
        let doc = format!("{}{}", "[".repeat(20), "]".repeat(20));
        assert!(parse(&doc).is_ok());
    }

    #[test]
    fn second_document_is_refused() {
        let error = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(error.span.start.line, 2);
    }
}
