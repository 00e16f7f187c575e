//! What anyone who may create a gateway, a Subnet or a Namespace writes, as the controller
//! reads it: a VpcEgressGateway of any shape through validation, Kube-OVN's comma lists,
//! networks and providers, and the admission annotation. Nothing panics; what validates has
//! sane sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veg_api::VpcEgressGateway;
use veg_api::kubeovn::{Subnet, SubnetSpec, list_addresses, list_items, parse_network};
use veg_api::names::admits_gateway;

fuzz_target!(|data: &[u8]| {
    if let Ok(gateway) = serde_json::from_slice::<VpcEgressGateway>(data)
        && veg_api::validate(&gateway).is_ok()
    {
        assert!(gateway.spec.policies.len() <= veg_api::limits::POLICIES);
        assert!(gateway.spec.selectors.len() <= veg_api::limits::SELECTORS);
    }
    let text = String::from_utf8_lossy(data);
    let _ = list_items(&text).count();
    let _ = list_addresses(&text);
    let _ = parse_network(&text);
    let mut parts = text.splitn(3, '\u{0}');
    let (value, namespace, name) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let _ = admits_gateway(value, namespace, name);
    let subnet = Subnet {
        spec: SubnetSpec {
            cidr_block: value.to_owned(),
            provider: namespace.to_owned(),
            gateway: name.to_owned(),
            ..SubnetSpec::default()
        },
        ..Subnet::new("fuzzed", SubnetSpec::default())
    };
    let _ = subnet.spec.cidrs();
    let _ = subnet.spec.gateways();
    if let Some((nad_namespace, nad)) = subnet.attachment_network() {
        assert!(!nad_namespace.is_empty() && !nad.is_empty());
    }
    let _ = veg_api::is_dns_subdomain(&text);
});
