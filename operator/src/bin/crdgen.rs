//! Writes the CustomResourceDefinitions into each directory given: `crdgen [dir]...`, by default
//! `crds` and the Helm chart's `charts/strom/crds`.

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dirs: Vec<PathBuf> = match &args[..] {
        [] | [_] => vec!["crds".into(), "charts/strom/crds".into()],
        [_program, dirs @ ..] => dirs.iter().map(PathBuf::from).collect(),
    };
    let files = strom_operator::crd::crd_files()?;
    for dir in dirs {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (file, yaml) in &files {
            let path = dir.join(file);
            std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
