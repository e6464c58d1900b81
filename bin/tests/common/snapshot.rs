//! The snapshot check of `streamctl`'s test binaries (included by `#[path]`: a folder under
//! `tests/` is no test binary of its own).

/// Checks `text` against `snapshots/{name}.snap` at the workspace's root.
pub fn snapshot(name: &str, text: &str) {
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, text);
    });
}
