//! Placeholder: filled in by the chart-source work of issue #5.
