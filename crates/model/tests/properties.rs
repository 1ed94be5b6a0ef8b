//! Property tests: image references round-trip byte-exactly; no parser panics on any input; the
//! newest tag is always allowed and never beaten by another allowed tag.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::time::{Duration, SystemTime};

use model::policy::parse_tag_version;
use model::release::release_name;
use model::{FilterKind, ImageRef, TagCandidate, TagFilter};
use proptest::prelude::*;

fn registry() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        "[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?){1,3}",
        Just("localhost".to_owned()),
        "[A-Z][a-zA-Z0-9]{0,6}",
    ];
    (host, proptest::option::of(1_u32..65_535)).prop_map(|(host, port)| match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

fn reference() -> impl Strategy<Value = String> {
    let component = "[a-z0-9]{1,4}((\\.|_|__|-{1,3})[a-z0-9]{1,4}){0,2}";
    (
        proptest::option::of(registry()),
        proptest::collection::vec(component, 1..4),
        proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        proptest::option::of("sha256:[0-9a-f]{64}"),
    )
        .prop_map(|(registry, mut path, tag, digest)| {
            // Without a registry, a first component with a dot would be read as a registry host
            // (the Docker rule), which is a different reference; keep it a path.
            if registry.is_none() {
                path[0] = path[0].replace('.', "-");
            }
            let mut text = registry.map(|r| format!("{r}/")).unwrap_or_default();
            text.push_str(&path.join("/"));
            if let Some(tag) = tag {
                text.push(':');
                text.push_str(&tag);
            }
            if let Some(digest) = digest {
                text.push('@');
                text.push_str(&digest);
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn image_references_round_trip_byte_exactly(text in reference()) {
        let image = ImageRef::parse(&text).unwrap();
        prop_assert_eq!(image.to_string(), text.clone());
        let again = ImageRef::parse(&image.to_string()).unwrap();
        prop_assert_eq!(&again, &image);
        if let Some(tag) = image.tag() {
            let retagged = image.with_tag(tag).unwrap();
            prop_assert!(retagged.same_repository(&image));
        }
    }

    #[test]
    fn image_parser_never_panics(text in "\\PC{0,60}", near in "[a-zA-Z0-9:/@._\\-\\[\\]]{0,40}") {
        let _ = ImageRef::parse(&text);
        if let Ok(image) = ImageRef::parse(&near) {
            prop_assert_eq!(image.to_string(), near);
        }
    }

    #[test]
    fn filter_parser_never_panics(
        text in "\\PC{0,40}",
        range in "[0-9xX*.~^<>=!|, vV+a-z-]{0,30}",
        pattern in "[\\PC]{0,20}",
    ) {
        let _ = TagFilter::parse(&text);
        let _ = TagFilter::parse(&format!("semver:{range}"));
        let _ = TagFilter::parse(&format!("regex:{pattern}"));
        let _ = TagFilter::parse(&format!("glob:{pattern}"));
        let _ = parse_tag_version(&range);
        let _ = release_name(&text, &pattern, None, None);
    }

    #[test]
    fn newest_is_allowed_and_not_beaten(
        filter in prop_oneof![
            Just("glob:*"), Just("glob:1.*"), Just("semver:^1.0"), Just("semver:>=0.5 <2.0"),
            Just("semver:>=1.0.0-0"), Just("regex:^[0-9]+\\.[0-9]+$"), Just("latest"),
        ],
        tags in proptest::collection::vec(
            ("(v?[0-9]{1,2}(\\.[0-9]{1,2}){0,2}(-rc\\.[0-9])?|latest|dev-[a-z]{3})", proptest::option::of(0_u64..50)),
            0..12,
        ),
    ) {
        let filter = TagFilter::parse(filter).unwrap();
        let candidates: Vec<(String, Option<SystemTime>)> = tags
            .into_iter()
            .map(|(tag, secs)| (tag, secs.map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))))
            .collect();
        match filter.newest(&candidates) {
            None => prop_assert!(
                candidates.iter().all(|c| !filter.allows(c.tag())
                    || (filter.kind() == FilterKind::Semver && parse_tag_version(c.tag()).is_none()))
            ),
            Some(best) => {
                prop_assert!(filter.allows(best.tag()));
                if filter.kind() == FilterKind::Semver {
                    let best_version = parse_tag_version(best.tag()).unwrap();
                    for c in candidates.iter().filter(|c| filter.allows(c.tag())) {
                        let v = parse_tag_version(c.tag()).unwrap();
                        prop_assert!(v.cmp_precedence(&best_version) != std::cmp::Ordering::Greater);
                    }
                } else {
                    let known = |t: Option<SystemTime>| t.filter(|t| *t > SystemTime::UNIX_EPOCH);
                    for c in candidates.iter().filter(|c| filter.allows(c.tag())) {
                        prop_assert!(known(c.created()) <= known(best.created()));
                    }
                }
            }
        }
    }
}
