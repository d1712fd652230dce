//! Regenerate the committed generated models (`models/edge`, `models/seed_lab`, `models/edge_aware`); see
//! `tests::models`. Run after changing codegen, the runtime's blob format or the fixture.

fn main() -> anyhow::Result<()> {
    tests::models::regenerate(tests::models::workspace())?;
    eprintln!("regenerated models/edge, models/seed_lab/model.rs and models/edge_aware");
    Ok(())
}
