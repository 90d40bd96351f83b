// `sqlx::migrate!` embeds src/store/migrations at compile time; without this, adding or editing a
// migration would not rebuild the crate and the binary would carry stale migrations.
fn main() {
    println!("cargo:rerun-if-changed=src/store/migrations");
}
