//! Compile-fail tests: every misuse of `#[limit_rate]` gets an error that says what to write.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
