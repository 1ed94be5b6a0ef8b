//! Placeholder: antecedent annotation and ownership check of issue #5.
