//! Placeholder: values composition of issue #5.
