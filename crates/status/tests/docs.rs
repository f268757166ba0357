//! docs/COMMUNICATION.md shows the status config with its defaults; it must stay
//! true.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use warden_status::StatusConfig;

#[test]
fn the_documented_config_is_the_default_one() {
    let doc = include_str!("../../../docs/COMMUNICATION.md");
    let start = doc.find("```toml\n").expect("a ```toml block") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("the block ends");
    let documented: StatusConfig = toml::from_str(&doc[start..end]).unwrap();
    documented.validate().unwrap();
    assert_eq!(documented, StatusConfig::default());
}
