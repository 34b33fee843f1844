//! The contract between data and model: the encoded row is a sequence of spans, each with the
//! activation the model applies to it. Models see nothing but this.

use serde::{Deserialize, Serialize};

/// What a model applies to a span of its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// One scalar in [-1, 1].
    Tanh,
    /// A one-hot choice among `width` options.
    Softmax,
}

/// A run of encoded columns `[start, start + width)` belonging to table column `column`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub width: usize,
    pub activation: Activation,
    /// Index of the modelled column (in schema order) this span encodes.
    pub column: usize,
}

impl Span {
    pub fn end(&self) -> usize {
        self.start + self.width
    }
}

/// The spans of an encoded row, in order, with precomputed offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    spans: Vec<Span>,
}

impl Layout {
    /// Build from `(activation, width, column)` triples in order.
    pub fn new(parts: impl IntoIterator<Item = (Activation, usize, usize)>) -> Layout {
        let mut start = 0;
        let spans = parts
            .into_iter()
            .map(|(activation, width, column)| {
                assert!(width > 0, "a span has width >= 1");
                let span = Span {
                    start,
                    width,
                    activation,
                    column,
                };
                start += width;
                span
            })
            .collect();
        Layout { spans }
    }

    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    /// Width of an encoded row.
    pub fn width(&self) -> usize {
        self.spans.last().map_or(0, Span::end)
    }

    /// Spans with a tanh activation.
    pub fn scalars(&self) -> impl Iterator<Item = &Span> {
        self.spans
            .iter()
            .filter(|s| s.activation == Activation::Tanh)
    }

    /// Spans with a softmax activation.
    pub fn softmaxes(&self) -> impl Iterator<Item = &Span> {
        self.spans
            .iter()
            .filter(|s| s.activation == Activation::Softmax)
    }

    /// The position of each tanh value (a tanh span is one wide).
    pub fn scalar_positions(&self) -> Vec<usize> {
        self.scalars().map(|s| s.start).collect()
    }

    /// `(start, width)` of each softmax span.
    pub fn softmax_spans(&self) -> Vec<(usize, usize)> {
        self.softmaxes().map(|s| (s.start, s.width)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_widths_follow_the_parts() {
        let l = Layout::new([
            (Activation::Tanh, 1, 0),
            (Activation::Softmax, 3, 0),
            (Activation::Softmax, 2, 1),
        ]);
        assert_eq!(l.width(), 6);
        let starts: Vec<usize> = l.spans().iter().map(|s| s.start).collect();
        assert_eq!(starts, [0, 1, 4]);
        assert_eq!(l.scalars().count(), 1);
        assert_eq!(l.softmaxes().count(), 2);
        assert_eq!(l.scalar_positions(), [0]);
        assert_eq!(l.softmax_spans(), [(1, 3), (4, 2)]);
    }
}
