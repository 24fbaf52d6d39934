//! Building GeoIP databases for geosteer.
//!
//! This module turns a small, human-editable, line-based text source into a
//! [MaxMind DB] (`.mmdb`, format version 2.0) file whose records follow the
//! GeoIP2-City layout, so that the ordinary `maxminddb` reader (and
//! `maxminddb::geoip2::City`) can query it.
//!
//! * [`parse_source`] parses and validates the text source, collecting every
//!   error with its `file:line:` position.
//! * [`write_mmdb`] writes the database: an IPv6 tree (IPv4 networks live at
//!   `::/96`), longest prefix wins, identical data records stored once, and
//!   byte-identical output for identical input.
//!
//! The text source format is one network per line:
//!
//! ```text
//! # comment
//! CIDR,CONTINENT,COUNTRY,LATITUDE,LONGITUDE[,CITY]
//! 81.2.69.0/24,EU,GB,51.5142,-0.0931,London
//! 2001:db8:2::/48,AS,SG,1.2897,103.8501,Singapore
//! 3.0.0.0/8,NA,,38.894,-77.431
//! ```
//!
//! [MaxMind DB]: https://maxmind.github.io/MaxMind-DB/

use std::collections::{BTreeMap, HashMap, VecDeque};

use ipnet::IpNet;

/// One geolocation record, as stored for a network in the database.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoRecord {
    /// Two-letter continent code: one of `AF AN AS EU NA OC SA`.
    pub continent: String,
    /// ISO 3166-1 alpha-2 country code (two uppercase letters), if any.
    pub country: Option<String>,
    /// English city name, if any.
    pub city: Option<String>,
    /// Latitude in degrees, `-90.0..=90.0`.
    pub latitude: f64,
    /// Longitude in degrees, `-180.0..=180.0`.
    pub longitude: f64,
}

/// Continent codes accepted in the source, with their English names.
const CONTINENTS: &[(&str, &str)] = &[
    ("AF", "Africa"),
    ("AN", "Antarctica"),
    ("AS", "Asia"),
    ("EU", "Europe"),
    ("NA", "North America"),
    ("OC", "Oceania"),
    ("SA", "South America"),
];

fn continent_name(code: &str) -> Option<&'static str> {
    CONTINENTS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, name)| *name)
}

fn country_name(code: &str) -> Option<&'static str> {
    COUNTRY_NAMES
        .binary_search_by(|(c, _)| (*c).cmp(code))
        .ok()
        .map(|i| COUNTRY_NAMES[i].1)
}

fn is_country_code(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// Parses a text source into `(network, record)` pairs.
///
/// `file` is only used to prefix error messages. Blank lines and `#`
/// comments (whole-line or trailing) are ignored. Every data line has the
/// form `CIDR,CONTINENT,COUNTRY,LATITUDE,LONGITUDE[,CITY]`, fields trimmed;
/// `COUNTRY` and `CITY` may be empty (the city may contain commas).
///
/// On failure, returns *all* errors found, each formatted as
/// `file:line: message`: malformed lines, bad CIDRs, networks with host bits
/// set, latitude outside `-90..=90`, longitude outside `-180..=180`, unknown
/// continent codes, country codes that are not two uppercase letters and
/// networks listed more than once.
pub fn parse_source(text: &str, file: &str) -> Result<Vec<(IpNet, GeoRecord)>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<IpNet, usize> = HashMap::new();

    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        let line = match raw.find('#') {
            Some(pos) => &raw[..pos],
            None => raw,
        }
        .trim();
        if line.is_empty() {
            continue;
        }
        let mut err = |msg: String| errors.push(format!("{file}:{lineno}: {msg}"));

        let fields: Vec<&str> = line.splitn(6, ',').map(str::trim).collect();
        if fields.len() < 5 {
            err(format!(
                "expected CIDR,CONTINENT,COUNTRY,LATITUDE,LONGITUDE[,CITY], got {} field(s)",
                fields.len()
            ));
            continue;
        }
        let mut ok = true;

        let net = match fields[0].parse::<IpNet>() {
            Ok(net) if net.trunc() != net => {
                err(format!(
                    "network {} has host bits set (did you mean {}?)",
                    fields[0],
                    net.trunc()
                ));
                ok = false;
                None
            }
            Ok(net) => Some(net),
            Err(_) => {
                err(format!("invalid CIDR {:?}", fields[0]));
                ok = false;
                None
            }
        };
        if let Some(net) = net {
            if let Some(first) = seen.get(&net) {
                err(format!(
                    "duplicate network {net} (first defined at line {first})"
                ));
                ok = false;
            } else {
                seen.insert(net, lineno);
            }
        }

        let continent = fields[1];
        if continent_name(continent).is_none() {
            err(format!(
                "invalid continent {continent:?} (expected one of AF AN AS EU NA OC SA)"
            ));
            ok = false;
        }

        let country = fields[2];
        if !country.is_empty() && !is_country_code(country) {
            err(format!(
                "invalid country {country:?} (expected two uppercase letters or empty)"
            ));
            ok = false;
        }

        let latitude = match fields[3].parse::<f64>() {
            Ok(v) if v.is_finite() && (-90.0..=90.0).contains(&v) => Some(v),
            _ => {
                err(format!("latitude {:?} not a number in -90..90", fields[3]));
                ok = false;
                None
            }
        };
        let longitude = match fields[4].parse::<f64>() {
            Ok(v) if v.is_finite() && (-180.0..=180.0).contains(&v) => Some(v),
            _ => {
                err(format!(
                    "longitude {:?} not a number in -180..180",
                    fields[4]
                ));
                ok = false;
                None
            }
        };
        let city = fields
            .get(5)
            .filter(|c| !c.is_empty())
            .map(|c| (*c).to_string());

        if let (true, Some(net), Some(latitude), Some(longitude)) = (ok, net, latitude, longitude) {
            out.push((
                net,
                GeoRecord {
                    continent: continent.to_string(),
                    country: (!country.is_empty()).then(|| country.to_string()),
                    city,
                    latitude,
                    longitude,
                },
            ));
        }
    }

    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

// ---------------------------------------------------------------------------
// MaxMind DB data-section encoding
// ---------------------------------------------------------------------------

/// MaxMind DB data type numbers (spec section "Output Data Section").
const T_STRING: u8 = 2;
const T_DOUBLE: u8 = 3;
const T_UINT16: u8 = 5;
const T_UINT32: u8 = 6;
const T_MAP: u8 = 7;
const T_UINT64: u8 = 9;
const T_ARRAY: u8 = 11;

/// A value in the MaxMind DB data model (the subset this writer needs).
/// Maps are `BTreeMap`s so keys are always written in sorted order.
enum Value {
    Str(String),
    Double(f64),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(BTreeMap<&'static str, Value>),
    Array(Vec<Value>),
}

fn write_control(out: &mut Vec<u8>, type_num: u8, size: usize) -> Result<(), String> {
    let (first_type, ext) = if type_num <= 7 {
        (type_num << 5, None)
    } else {
        (0u8, Some(type_num - 7))
    };
    let (size_bits, extra): (u8, Vec<u8>) = if size < 29 {
        (size as u8, Vec::new())
    } else if size < 29 + 256 {
        (29, vec![(size - 29) as u8])
    } else if size < 285 + 65_536 {
        (30, ((size - 285) as u16).to_be_bytes().to_vec())
    } else if size < 65_821 + (1 << 24) {
        (31, ((size - 65_821) as u32).to_be_bytes()[1..].to_vec())
    } else {
        return Err(format!("value of size {size} too large for MaxMind DB"));
    };
    out.push(first_type | size_bits);
    if let Some(ext) = ext {
        out.push(ext);
    }
    out.extend_from_slice(&extra);
    Ok(())
}

fn write_uint(out: &mut Vec<u8>, type_num: u8, be: &[u8]) -> Result<(), String> {
    let skip = be.iter().take_while(|b| **b == 0).count();
    let bytes = &be[skip..];
    write_control(out, type_num, bytes.len())?;
    out.extend_from_slice(bytes);
    Ok(())
}

fn encode(out: &mut Vec<u8>, value: &Value) -> Result<(), String> {
    match value {
        Value::Str(s) => {
            write_control(out, T_STRING, s.len())?;
            out.extend_from_slice(s.as_bytes());
        }
        Value::Double(d) => {
            write_control(out, T_DOUBLE, 8)?;
            out.extend_from_slice(&d.to_be_bytes());
        }
        Value::U16(v) => write_uint(out, T_UINT16, &v.to_be_bytes())?,
        Value::U32(v) => write_uint(out, T_UINT32, &v.to_be_bytes())?,
        Value::U64(v) => write_uint(out, T_UINT64, &v.to_be_bytes())?,
        Value::Map(map) => {
            write_control(out, T_MAP, map.len())?;
            for (k, v) in map {
                write_control(out, T_STRING, k.len())?;
                out.extend_from_slice(k.as_bytes());
                encode(out, v)?;
            }
        }
        Value::Array(items) => {
            write_control(out, T_ARRAY, items.len())?;
            for v in items {
                encode(out, v)?;
            }
        }
    }
    Ok(())
}

fn names_en(name: &str) -> Value {
    Value::Map(BTreeMap::from([("en", Value::Str(name.to_string()))]))
}

/// Builds the GeoIP2-City shaped value for one record, validating it.
fn record_value(net: &IpNet, rec: &GeoRecord) -> Result<Value, String> {
    let continent_en = continent_name(&rec.continent)
        .ok_or_else(|| format!("{net}: invalid continent {:?}", rec.continent))?;
    if !(rec.latitude.is_finite() && (-90.0..=90.0).contains(&rec.latitude)) {
        return Err(format!("{net}: latitude {} not in -90..90", rec.latitude));
    }
    if !(rec.longitude.is_finite() && (-180.0..=180.0).contains(&rec.longitude)) {
        return Err(format!(
            "{net}: longitude {} not in -180..180",
            rec.longitude
        ));
    }

    let mut top = BTreeMap::new();
    top.insert(
        "continent",
        Value::Map(BTreeMap::from([
            ("code", Value::Str(rec.continent.clone())),
            ("names", names_en(continent_en)),
        ])),
    );
    if let Some(cc) = &rec.country {
        if !is_country_code(cc) {
            return Err(format!("{net}: invalid country {cc:?}"));
        }
        let mut country = BTreeMap::from([("iso_code", Value::Str(cc.clone()))]);
        if let Some(name) = country_name(cc) {
            country.insert("names", names_en(name));
        }
        top.insert("country", Value::Map(country));
    }
    if let Some(city) = &rec.city {
        top.insert(
            "city",
            Value::Map(BTreeMap::from([("names", names_en(city))])),
        );
    }
    top.insert(
        "location",
        Value::Map(BTreeMap::from([
            ("latitude", Value::Double(rec.latitude)),
            ("longitude", Value::Double(rec.longitude)),
        ])),
    );
    Ok(Value::Map(top))
}

// ---------------------------------------------------------------------------
// Search tree
// ---------------------------------------------------------------------------

/// Node of the prefix trie built from the entries (one bit per level).
#[derive(Default)]
struct TrieNode {
    children: [Option<usize>; 2],
    /// Index of the unique data record assigned exactly at this prefix.
    value: Option<usize>,
}

/// A search-tree record: no data, a data record, or another node.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rec {
    Empty,
    Data(usize),
    Node(usize),
}

/// 128-bit key and prefix length of a network in the IPv6 tree; IPv4
/// networks are placed at `::/96` (IPv4-compatible layout used by MaxMind).
fn tree_key(net: &IpNet) -> (u128, u8) {
    match net {
        IpNet::V4(n) => (u128::from(u32::from(n.network())), n.prefix_len() + 96),
        IpNet::V6(n) => (u128::from(n.network()), n.prefix_len()),
    }
}

/// Resolves the trie under `t` into compacted search-tree nodes (pushed to
/// `nodes` in post-order), applying longest-prefix-wins inheritance and
/// merging sibling leaves that carry the same record.
fn resolve(
    trie: &[TrieNode],
    t: usize,
    inherited: Option<usize>,
    nodes: &mut Vec<[Rec; 2]>,
) -> Rec {
    let here = trie[t].value.or(inherited);
    let leaf = match here {
        Some(d) => Rec::Data(d),
        None => Rec::Empty,
    };
    if trie[t].children == [None, None] {
        return leaf;
    }
    let mut pair = [leaf; 2];
    for (bit, slot) in pair.iter_mut().enumerate() {
        if let Some(c) = trie[t].children[bit] {
            *slot = resolve(trie, c, here, nodes);
        }
    }
    if pair[0] == pair[1] && !matches!(pair[0], Rec::Node(_)) {
        return pair[0];
    }
    nodes.push(pair);
    Rec::Node(nodes.len() - 1)
}

/// Appends one search-tree node (left and right records) in the layout for
/// `record_size` bits per record (24, 28; anything else means 32).
fn pack_node(out: &mut Vec<u8>, record_size: u16, l: u32, r: u32) {
    match record_size {
        24 => {
            out.extend_from_slice(&l.to_be_bytes()[1..]);
            out.extend_from_slice(&r.to_be_bytes()[1..]);
        }
        28 => {
            // The middle byte holds the high nibbles: left's, then right's.
            out.extend_from_slice(&l.to_be_bytes()[1..]);
            out.push(((((l >> 24) & 0x0f) << 4) | ((r >> 24) & 0x0f)) as u8);
            out.extend_from_slice(&r.to_be_bytes()[1..]);
        }
        _ => {
            out.extend_from_slice(&l.to_be_bytes());
            out.extend_from_slice(&r.to_be_bytes());
        }
    }
}

/// Magic marker that precedes the metadata map.
const METADATA_MARKER: &[u8] = b"\xAB\xCD\xEFMaxMind.com";

/// Writes a MaxMind DB (format 2.0) file and returns its bytes.
///
/// * The tree is IPv6 (`ip_version` 6); IPv4 networks are stored at `::/96`
///   so IPv4 lookups of the `maxminddb` crate find them. (No aliases such as
///   `::ffff:0:0/96` are created.)
/// * Longest prefix wins: a more specific network overrides the less
///   specific one it is inside; addresses covered by no entry have no data.
/// * Each distinct record is stored once in the data section, in GeoIP2-City
///   layout (`continent`, `country`, `city`, `location`); adjacent networks
///   with identical data may be merged into one larger tree network.
/// * Output is deterministic: it depends only on the set of entries and the
///   arguments (`build_epoch` is the metadata build time, seconds since
///   the Unix epoch), not on input order or the wall clock.
/// * The record size is 24 bits when it fits, else 28, else 32.
///
/// Returns an error (never panics) for invalid records, networks with host
/// bits set, a network listed twice with different data, an empty
/// `database_type`, or a database too large for the format.
pub fn write_mmdb(
    entries: &[(IpNet, GeoRecord)],
    database_type: &str,
    description: &str,
    build_epoch: u64,
) -> Result<Vec<u8>, String> {
    write_mmdb_impl(entries, database_type, description, build_epoch, 24)
}

/// [`write_mmdb`] with a lower bound on the record size (24, 28 or 32), so
/// tests can exercise the wider layouts without huge databases.
fn write_mmdb_impl(
    entries: &[(IpNet, GeoRecord)],
    database_type: &str,
    description: &str,
    build_epoch: u64,
    min_record_size: u16,
) -> Result<Vec<u8>, String> {
    if database_type.is_empty() {
        return Err("database_type must not be empty".to_string());
    }

    // Encode each record once; identical encodings share one data index.
    let mut data_index: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut data_blobs: Vec<Vec<u8>> = Vec::new();
    let mut trie = vec![TrieNode::default()];
    let mut sorted: Vec<&(IpNet, GeoRecord)> = entries.iter().collect();
    sorted.sort_by_key(|(net, _)| tree_key(net));

    for (net, rec) in sorted {
        if net.trunc() != *net {
            return Err(format!("network {net} has host bits set"));
        }
        let mut blob = Vec::new();
        encode(&mut blob, &record_value(net, rec)?)?;
        let next = data_blobs.len();
        let d = *data_index.entry(blob.clone()).or_insert(next);
        if d == next {
            data_blobs.push(blob);
        }

        let (key, len) = tree_key(net);
        let mut t = 0usize;
        for depth in 0..len {
            let bit = ((key >> (127 - depth)) & 1) as usize;
            t = match trie[t].children[bit] {
                Some(c) => c,
                None => {
                    trie.push(TrieNode::default());
                    let c = trie.len() - 1;
                    trie[t].children[bit] = Some(c);
                    c
                }
            };
        }
        match trie[t].value {
            Some(existing) if existing != d => {
                return Err(format!("network {net} listed twice with different data"));
            }
            _ => trie[t].value = Some(d),
        }
    }

    // Compact tree (post-order indices), then renumber breadth-first from
    // the root so that the root is node 0, and lay out data in the order
    // the tree first references it.
    let mut compact: Vec<[Rec; 2]> = Vec::new();
    let root = match resolve(&trie, 0, None, &mut compact) {
        Rec::Node(n) => n,
        leaf => {
            compact.push([leaf, leaf]);
            compact.len() - 1
        }
    };
    let mut order: Vec<usize> = Vec::with_capacity(compact.len());
    let mut number: HashMap<usize, usize> = HashMap::with_capacity(compact.len());
    let mut data_offset: HashMap<usize, usize> = HashMap::new();
    let mut data_section: Vec<u8> = Vec::new();
    let mut queue = VecDeque::from([root]);
    number.insert(root, 0);
    while let Some(n) = queue.pop_front() {
        order.push(n);
        for rec in compact[n] {
            match rec {
                Rec::Node(c) => {
                    if !number.contains_key(&c) {
                        number.insert(c, number.len());
                        queue.push_back(c);
                    }
                }
                Rec::Data(d) => {
                    if let std::collections::hash_map::Entry::Vacant(e) = data_offset.entry(d) {
                        e.insert(data_section.len());
                        data_section.extend_from_slice(&data_blobs[d]);
                    }
                }
                Rec::Empty => {}
            }
        }
    }

    let node_count = order.len();
    // Largest record value: data pointers are node_count + 16 + offset.
    let max_value = node_count as u64 + 16 + data_section.len() as u64;
    let record_size: u16 = if max_value < 1 << 24 && min_record_size <= 24 {
        24
    } else if max_value < 1 << 28 && min_record_size <= 28 {
        28
    } else if max_value < 1 << 32 {
        32
    } else {
        return Err(format!(
            "database too large: {node_count} nodes, {} data bytes",
            data_section.len()
        ));
    };
    let node_count_u32 = u32::try_from(node_count)
        .map_err(|_| format!("too many search tree nodes: {node_count}"))?;

    let value_of = |rec: Rec| -> u32 {
        // All values are < 2^32, checked via max_value above.
        match rec {
            Rec::Empty => node_count as u32,
            Rec::Node(c) => number.get(&c).copied().unwrap_or(0) as u32,
            Rec::Data(d) => (node_count + 16 + data_offset.get(&d).copied().unwrap_or(0)) as u32,
        }
    };

    let node_bytes = usize::from(record_size) / 4;
    let mut out = Vec::with_capacity(
        node_count * node_bytes + 16 + data_section.len() + METADATA_MARKER.len() + 256,
    );
    for &n in &order {
        let l = value_of(compact[n][0]);
        let r = value_of(compact[n][1]);
        pack_node(&mut out, record_size, l, r);
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data_section);

    let metadata = Value::Map(BTreeMap::from([
        ("binary_format_major_version", Value::U16(2)),
        ("binary_format_minor_version", Value::U16(0)),
        ("build_epoch", Value::U64(build_epoch)),
        ("database_type", Value::Str(database_type.to_string())),
        ("description", names_en(description)),
        ("ip_version", Value::U16(6)),
        (
            "languages",
            Value::Array(vec![Value::Str("en".to_string())]),
        ),
        ("node_count", Value::U32(node_count_u32)),
        ("record_size", Value::U16(record_size)),
    ]));
    out.extend_from_slice(METADATA_MARKER);
    encode(&mut out, &metadata)?;
    Ok(out)
}

/// ISO 3166-1 alpha-2 codes with English short names (common names where
/// ISO has one), sorted by code; generated once from the `pycountry`
/// package's ISO 3166-1 data. Codes not listed get no `names` entry.
const COUNTRY_NAMES: &[(&str, &str)] = &[
    ("AD", "Andorra"),
    ("AE", "United Arab Emirates"),
    ("AF", "Afghanistan"),
    ("AG", "Antigua and Barbuda"),
    ("AI", "Anguilla"),
    ("AL", "Albania"),
    ("AM", "Armenia"),
    ("AO", "Angola"),
    ("AQ", "Antarctica"),
    ("AR", "Argentina"),
    ("AS", "American Samoa"),
    ("AT", "Austria"),
    ("AU", "Australia"),
    ("AW", "Aruba"),
    ("AX", "Åland Islands"),
    ("AZ", "Azerbaijan"),
    ("BA", "Bosnia and Herzegovina"),
    ("BB", "Barbados"),
    ("BD", "Bangladesh"),
    ("BE", "Belgium"),
    ("BF", "Burkina Faso"),
    ("BG", "Bulgaria"),
    ("BH", "Bahrain"),
    ("BI", "Burundi"),
    ("BJ", "Benin"),
    ("BL", "Saint Barthélemy"),
    ("BM", "Bermuda"),
    ("BN", "Brunei Darussalam"),
    ("BO", "Bolivia"),
    ("BQ", "Bonaire, Sint Eustatius and Saba"),
    ("BR", "Brazil"),
    ("BS", "Bahamas"),
    ("BT", "Bhutan"),
    ("BV", "Bouvet Island"),
    ("BW", "Botswana"),
    ("BY", "Belarus"),
    ("BZ", "Belize"),
    ("CA", "Canada"),
    ("CC", "Cocos (Keeling) Islands"),
    ("CD", "Congo, The Democratic Republic of the"),
    ("CF", "Central African Republic"),
    ("CG", "Congo"),
    ("CH", "Switzerland"),
    ("CI", "Côte d'Ivoire"),
    ("CK", "Cook Islands"),
    ("CL", "Chile"),
    ("CM", "Cameroon"),
    ("CN", "China"),
    ("CO", "Colombia"),
    ("CR", "Costa Rica"),
    ("CU", "Cuba"),
    ("CV", "Cabo Verde"),
    ("CW", "Curaçao"),
    ("CX", "Christmas Island"),
    ("CY", "Cyprus"),
    ("CZ", "Czechia"),
    ("DE", "Germany"),
    ("DJ", "Djibouti"),
    ("DK", "Denmark"),
    ("DM", "Dominica"),
    ("DO", "Dominican Republic"),
    ("DZ", "Algeria"),
    ("EC", "Ecuador"),
    ("EE", "Estonia"),
    ("EG", "Egypt"),
    ("EH", "Western Sahara"),
    ("ER", "Eritrea"),
    ("ES", "Spain"),
    ("ET", "Ethiopia"),
    ("FI", "Finland"),
    ("FJ", "Fiji"),
    ("FK", "Falkland Islands (Malvinas)"),
    ("FM", "Micronesia, Federated States of"),
    ("FO", "Faroe Islands"),
    ("FR", "France"),
    ("GA", "Gabon"),
    ("GB", "United Kingdom"),
    ("GD", "Grenada"),
    ("GE", "Georgia"),
    ("GF", "French Guiana"),
    ("GG", "Guernsey"),
    ("GH", "Ghana"),
    ("GI", "Gibraltar"),
    ("GL", "Greenland"),
    ("GM", "Gambia"),
    ("GN", "Guinea"),
    ("GP", "Guadeloupe"),
    ("GQ", "Equatorial Guinea"),
    ("GR", "Greece"),
    ("GS", "South Georgia and the South Sandwich Islands"),
    ("GT", "Guatemala"),
    ("GU", "Guam"),
    ("GW", "Guinea-Bissau"),
    ("GY", "Guyana"),
    ("HK", "Hong Kong"),
    ("HM", "Heard Island and McDonald Islands"),
    ("HN", "Honduras"),
    ("HR", "Croatia"),
    ("HT", "Haiti"),
    ("HU", "Hungary"),
    ("ID", "Indonesia"),
    ("IE", "Ireland"),
    ("IL", "Israel"),
    ("IM", "Isle of Man"),
    ("IN", "India"),
    ("IO", "British Indian Ocean Territory"),
    ("IQ", "Iraq"),
    ("IR", "Iran"),
    ("IS", "Iceland"),
    ("IT", "Italy"),
    ("JE", "Jersey"),
    ("JM", "Jamaica"),
    ("JO", "Jordan"),
    ("JP", "Japan"),
    ("KE", "Kenya"),
    ("KG", "Kyrgyzstan"),
    ("KH", "Cambodia"),
    ("KI", "Kiribati"),
    ("KM", "Comoros"),
    ("KN", "Saint Kitts and Nevis"),
    ("KP", "North Korea"),
    ("KR", "South Korea"),
    ("KW", "Kuwait"),
    ("KY", "Cayman Islands"),
    ("KZ", "Kazakhstan"),
    ("LA", "Laos"),
    ("LB", "Lebanon"),
    ("LC", "Saint Lucia"),
    ("LI", "Liechtenstein"),
    ("LK", "Sri Lanka"),
    ("LR", "Liberia"),
    ("LS", "Lesotho"),
    ("LT", "Lithuania"),
    ("LU", "Luxembourg"),
    ("LV", "Latvia"),
    ("LY", "Libya"),
    ("MA", "Morocco"),
    ("MC", "Monaco"),
    ("MD", "Moldova"),
    ("ME", "Montenegro"),
    ("MF", "Saint Martin (French part)"),
    ("MG", "Madagascar"),
    ("MH", "Marshall Islands"),
    ("MK", "North Macedonia"),
    ("ML", "Mali"),
    ("MM", "Myanmar"),
    ("MN", "Mongolia"),
    ("MO", "Macao"),
    ("MP", "Northern Mariana Islands"),
    ("MQ", "Martinique"),
    ("MR", "Mauritania"),
    ("MS", "Montserrat"),
    ("MT", "Malta"),
    ("MU", "Mauritius"),
    ("MV", "Maldives"),
    ("MW", "Malawi"),
    ("MX", "Mexico"),
    ("MY", "Malaysia"),
    ("MZ", "Mozambique"),
    ("NA", "Namibia"),
    ("NC", "New Caledonia"),
    ("NE", "Niger"),
    ("NF", "Norfolk Island"),
    ("NG", "Nigeria"),
    ("NI", "Nicaragua"),
    ("NL", "Netherlands"),
    ("NO", "Norway"),
    ("NP", "Nepal"),
    ("NR", "Nauru"),
    ("NU", "Niue"),
    ("NZ", "New Zealand"),
    ("OM", "Oman"),
    ("PA", "Panama"),
    ("PE", "Peru"),
    ("PF", "French Polynesia"),
    ("PG", "Papua New Guinea"),
    ("PH", "Philippines"),
    ("PK", "Pakistan"),
    ("PL", "Poland"),
    ("PM", "Saint Pierre and Miquelon"),
    ("PN", "Pitcairn"),
    ("PR", "Puerto Rico"),
    ("PS", "Palestine, State of"),
    ("PT", "Portugal"),
    ("PW", "Palau"),
    ("PY", "Paraguay"),
    ("QA", "Qatar"),
    ("RE", "Réunion"),
    ("RO", "Romania"),
    ("RS", "Serbia"),
    ("RU", "Russian Federation"),
    ("RW", "Rwanda"),
    ("SA", "Saudi Arabia"),
    ("SB", "Solomon Islands"),
    ("SC", "Seychelles"),
    ("SD", "Sudan"),
    ("SE", "Sweden"),
    ("SG", "Singapore"),
    ("SH", "Saint Helena, Ascension and Tristan da Cunha"),
    ("SI", "Slovenia"),
    ("SJ", "Svalbard and Jan Mayen"),
    ("SK", "Slovakia"),
    ("SL", "Sierra Leone"),
    ("SM", "San Marino"),
    ("SN", "Senegal"),
    ("SO", "Somalia"),
    ("SR", "Suriname"),
    ("SS", "South Sudan"),
    ("ST", "Sao Tome and Principe"),
    ("SV", "El Salvador"),
    ("SX", "Sint Maarten (Dutch part)"),
    ("SY", "Syria"),
    ("SZ", "Eswatini"),
    ("TC", "Turks and Caicos Islands"),
    ("TD", "Chad"),
    ("TF", "French Southern Territories"),
    ("TG", "Togo"),
    ("TH", "Thailand"),
    ("TJ", "Tajikistan"),
    ("TK", "Tokelau"),
    ("TL", "Timor-Leste"),
    ("TM", "Turkmenistan"),
    ("TN", "Tunisia"),
    ("TO", "Tonga"),
    ("TR", "Türkiye"),
    ("TT", "Trinidad and Tobago"),
    ("TV", "Tuvalu"),
    ("TW", "Taiwan"),
    ("TZ", "Tanzania"),
    ("UA", "Ukraine"),
    ("UG", "Uganda"),
    ("UM", "United States Minor Outlying Islands"),
    ("US", "United States"),
    ("UY", "Uruguay"),
    ("UZ", "Uzbekistan"),
    ("VA", "Holy See (Vatican City State)"),
    ("VC", "Saint Vincent and the Grenadines"),
    ("VE", "Venezuela"),
    ("VG", "Virgin Islands, British"),
    ("VI", "Virgin Islands, U.S."),
    ("VN", "Vietnam"),
    ("VU", "Vanuatu"),
    ("WF", "Wallis and Futuna"),
    ("WS", "Samoa"),
    ("YE", "Yemen"),
    ("YT", "Mayotte"),
    ("ZA", "South Africa"),
    ("ZM", "Zambia"),
    ("ZW", "Zimbabwe"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use maxminddb::geoip2::City;
    use maxminddb::Reader;
    use std::net::IpAddr;

    const EPOCH: u64 = 1_767_225_600;

    fn rec(
        continent: &str,
        country: Option<&str>,
        lat: f64,
        lon: f64,
        city: Option<&str>,
    ) -> GeoRecord {
        GeoRecord {
            continent: continent.to_string(),
            country: country.map(str::to_string),
            city: city.map(str::to_string),
            latitude: lat,
            longitude: lon,
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sample() -> Vec<(IpNet, GeoRecord)> {
        vec![
            (net("11.0.0.0/8"), rec("EU", Some("DE"), 51.0, 9.0, None)),
            (
                net("11.1.2.0/24"),
                rec("AS", Some("JP"), 35.6895, 139.6917, Some("Tokyo")),
            ),
            (net("12.0.0.0/16"), rec("NA", None, 38.894, -77.431, None)),
            (
                net("2001:db8::/32"),
                rec("NA", Some("US"), 39.0438, -77.4874, Some("Ashburn")),
            ),
            (
                net("2001:db8:1::/48"),
                rec("SA", Some("BR"), -23.5475, -46.6361, Some("Sao Paulo")),
            ),
            // Same data as 11.0.0.0/8: must share one data-section entry.
            (net("2a00::/12"), rec("EU", Some("DE"), 51.0, 9.0, None)),
        ]
    }

    fn reader(bytes: Vec<u8>) -> Reader<Vec<u8>> {
        let r = Reader::from_source(bytes).expect("valid database");
        r.verify().expect("verify passes");
        r
    }

    /// Looks up `addr`, returning (continent, country, lat, lon, city, network).
    type Found = (String, Option<String>, f64, f64, Option<String>, IpNet);

    fn find(r: &Reader<Vec<u8>>, addr: &str) -> Option<Found> {
        let res = r.lookup(ip(addr)).unwrap();
        let network: IpNet = res.network().unwrap().to_string().parse().unwrap();
        assert!(network.contains(&ip(addr)), "{network} contains {addr}");
        let city: City = res.decode().unwrap()?;
        Some((
            city.continent.code?.to_string(),
            city.country.iso_code.map(str::to_string),
            city.location.latitude?,
            city.location.longitude?,
            city.city.names.english.map(str::to_string),
            network,
        ))
    }

    #[test]
    fn roundtrip_ipv4_and_ipv6() {
        let r = reader(write_mmdb(&sample(), "Test-City", "test db", EPOCH).unwrap());

        let (cont, cc, lat, lon, city, network) = find(&r, "11.1.2.3").unwrap();
        assert_eq!((cont.as_str(), cc.as_deref()), ("AS", Some("JP")));
        assert_eq!((lat, lon), (35.6895, 139.6917));
        assert_eq!(city.as_deref(), Some("Tokyo"));
        assert_eq!(network, net("11.1.2.0/24"));

        // A neighbour of the /24 override: the /8's data, on a tree split
        // inside the /8.
        let (cont, cc, lat, lon, city, network) = find(&r, "11.1.3.1").unwrap();
        assert_eq!((cont.as_str(), cc.as_deref()), ("EU", Some("DE")));
        assert_eq!((lat, lon, city), (51.0, 9.0, None));
        assert!(net("11.0.0.0/8").contains(&network) && network.prefix_len() > 8);
        let (_, _, _, _, _, network) = find(&r, "11.200.0.1").unwrap();
        assert_eq!(network, net("11.128.0.0/9"));

        let (cont, cc, lat, lon, _, network) = find(&r, "12.0.255.255").unwrap();
        assert_eq!((cont.as_str(), cc, lat, lon), ("NA", None, 38.894, -77.431));
        assert_eq!(network, net("12.0.0.0/16"));

        let (cont, cc, _, _, city, network) = find(&r, "2001:db8:1:2::1").unwrap();
        assert_eq!((cont.as_str(), cc.as_deref()), ("SA", Some("BR")));
        assert_eq!(city.as_deref(), Some("Sao Paulo"));
        assert_eq!(network, net("2001:db8:1::/48"));

        let (cont, cc, lat, lon, city, network) = find(&r, "2001:db8:ffff::1").unwrap();
        assert_eq!((cont.as_str(), cc.as_deref()), ("NA", Some("US")));
        assert_eq!((lat, lon), (39.0438, -77.4874));
        assert_eq!(city.as_deref(), Some("Ashburn"));
        assert!(net("2001:db8::/32").contains(&network));

        // Names come from the built-in tables.
        let city: City = r.lookup(ip("11.1.2.3")).unwrap().decode().unwrap().unwrap();
        assert_eq!(city.continent.names.english, Some("Asia"));
        assert_eq!(city.country.names.english, Some("Japan"));
    }

    #[test]
    fn unknown_addresses_have_no_data() {
        let r = reader(write_mmdb(&sample(), "Test-City", "test db", EPOCH).unwrap());
        for addr in [
            "10.0.0.1",
            "12.1.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "2001:db9::1",
            "::1",
            "ffff::1",
        ] {
            let res = r.lookup(ip(addr)).unwrap();
            assert!(!res.has_data(), "{addr} has no data");
            assert!(res.decode::<City>().unwrap().is_none());
        }
        // IPv4-mapped IPv6 addresses are not aliased to the IPv4 subtree.
        assert!(!r.lookup(ip("::ffff:11.1.2.3")).unwrap().has_data());
    }

    #[test]
    fn identical_records_are_deduplicated() {
        let r = reader(write_mmdb(&sample(), "Test-City", "test db", EPOCH).unwrap());
        let a = r.lookup(ip("11.9.9.9")).unwrap().offset();
        let b = r.lookup(ip("2a00::1")).unwrap().offset();
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, r.lookup(ip("11.1.2.3")).unwrap().offset());
    }

    #[test]
    fn output_is_deterministic() {
        let entries = sample();
        let a = write_mmdb(&entries, "Test-City", "test db", EPOCH).unwrap();
        let b = write_mmdb(&entries, "Test-City", "test db", EPOCH).unwrap();
        assert_eq!(a, b);
        let mut reversed = entries.clone();
        reversed.reverse();
        assert_eq!(
            a,
            write_mmdb(&reversed, "Test-City", "test db", EPOCH).unwrap()
        );
        assert_ne!(
            a,
            write_mmdb(&entries, "Test-City", "test db", EPOCH + 1).unwrap()
        );
    }

    #[test]
    fn metadata_is_written() {
        let r = reader(write_mmdb(&sample(), "Test-City", "test db", EPOCH).unwrap());
        let m = r.metadata();
        assert_eq!(m.binary_format_major_version, 2);
        assert_eq!(m.binary_format_minor_version, 0);
        assert_eq!(m.build_epoch, EPOCH);
        assert_eq!(m.database_type, "Test-City");
        assert_eq!(m.description.get("en").map(|s| &**s), Some("test db"));
        assert_eq!(m.ip_version, 6);
        assert_eq!(m.languages, vec!["en".to_string()]);
        assert_eq!(m.record_size, 24);
        assert!(m.node_count > 0);
    }

    #[test]
    fn wider_record_sizes_read_back() {
        for size in [28u16, 32] {
            let bytes = write_mmdb_impl(&sample(), "Test-City", "test db", EPOCH, size).unwrap();
            let r = reader(bytes);
            assert_eq!(r.metadata().record_size, size);
            assert_eq!(find(&r, "11.1.2.3").unwrap().1.as_deref(), Some("JP"));
            assert_eq!(find(&r, "2001:db8:1::9").unwrap().1.as_deref(), Some("BR"));
            assert!(find(&r, "10.0.0.1").is_none());
        }
    }

    #[test]
    fn pack_node_layouts() {
        let mut out = Vec::new();
        pack_node(&mut out, 24, 0x12_3456, 0xab_cdef);
        assert_eq!(out, [0x12, 0x34, 0x56, 0xab, 0xcd, 0xef]);
        out.clear();
        pack_node(&mut out, 28, 0x0a12_3456, 0x0bab_cdef);
        assert_eq!(out, [0x12, 0x34, 0x56, 0xab, 0xab, 0xcd, 0xef]);
        out.clear();
        pack_node(&mut out, 32, 1, 2);
        assert_eq!(out, [0, 0, 0, 1, 0, 0, 0, 2]);
    }

    #[test]
    fn control_byte_sizes() {
        let enc = |t: u8, size: usize| {
            let mut out = Vec::new();
            write_control(&mut out, t, size).unwrap();
            out
        };
        assert_eq!(enc(T_STRING, 28), [0x5c]);
        assert_eq!(enc(T_STRING, 29), [0x5d, 0]);
        assert_eq!(enc(T_STRING, 284), [0x5d, 255]);
        assert_eq!(enc(T_STRING, 285), [0x5e, 0, 0]);
        assert_eq!(enc(T_STRING, 65_821), [0x5f, 0, 0, 0]);
        assert_eq!(enc(T_ARRAY, 1), [0x01, 0x04]);
        assert_eq!(enc(T_UINT64, 30), [0x1d, 0x02, 1]);
        assert!(write_control(&mut Vec::new(), T_STRING, 65_821 + (1 << 24)).is_err());
        // Long strings round-trip through the reader.
        let long = "x".repeat(70_000);
        let entries = vec![(
            net("1.0.0.0/8"),
            rec("OC", Some("AU"), 0.0, 0.0, Some(&long)),
        )];
        let r = reader(write_mmdb(&entries, "T", "d", EPOCH).unwrap());
        assert_eq!(
            find(&r, "1.2.3.4").unwrap().4.as_deref(),
            Some(long.as_str())
        );
    }

    #[test]
    fn empty_and_default_route_databases() {
        let r = reader(write_mmdb(&[], "Empty", "empty", EPOCH).unwrap());
        assert_eq!(r.metadata().node_count, 1);
        // No IPv4 subtree exists, so the reader reports an IPv6 network for
        // IPv4 lookups; only check that there is no data.
        assert!(!r.lookup(ip("1.2.3.4")).unwrap().has_data());
        assert!(find(&r, "2001::1").is_none());

        let everywhere = vec![(net("::/0"), rec("AN", None, -90.0, 0.0, None))];
        let r = reader(write_mmdb(&everywhere, "All", "all", EPOCH).unwrap());
        assert_eq!(find(&r, "2001::1").unwrap().0, "AN");
        assert!(r.lookup(ip("1.2.3.4")).unwrap().has_data());

        // An IPv4 default route covers all of IPv4 (::/96) and nothing else.
        // (The whole IPv4 subtree is then one record, for which the reader
        // reports the IPv6 network ::/96, so only the data is checked.)
        let v4 = vec![(net("0.0.0.0/0"), rec("EU", None, 1.0, 2.0, None))];
        let r = reader(write_mmdb(&v4, "V4", "v4", EPOCH).unwrap());
        let city: City = r
            .lookup(ip("203.0.113.9"))
            .unwrap()
            .decode()
            .unwrap()
            .unwrap();
        assert_eq!(city.continent.code, Some("EU"));
        assert!(find(&r, "2001::1").is_none());
        assert!(find(&r, "::1:0:0:0").is_none());
    }

    #[test]
    fn write_rejects_bad_input() {
        let ok = rec("EU", None, 0.0, 0.0, None);
        let host_bits = vec![(net("10.0.0.1/8"), ok.clone())];
        assert!(write_mmdb(&host_bits, "T", "d", EPOCH)
            .unwrap_err()
            .contains("host bits"));
        let conflict = vec![
            (net("10.0.0.0/8"), ok.clone()),
            (net("10.0.0.0/8"), rec("AS", None, 0.0, 0.0, None)),
        ];
        assert!(write_mmdb(&conflict, "T", "d", EPOCH)
            .unwrap_err()
            .contains("twice"));
        let same_twice = vec![
            (net("10.0.0.0/8"), ok.clone()),
            (net("10.0.0.0/8"), ok.clone()),
        ];
        assert!(write_mmdb(&same_twice, "T", "d", EPOCH).is_ok());
        for bad in [
            rec("XX", None, 0.0, 0.0, None),
            rec("EU", Some("gb"), 0.0, 0.0, None),
            rec("EU", None, 91.0, 0.0, None),
            rec("EU", None, 0.0, f64::NAN, None),
        ] {
            assert!(write_mmdb(&[(net("10.0.0.0/8"), bad)], "T", "d", EPOCH).is_err());
        }
        assert!(write_mmdb(&[], "", "d", EPOCH).is_err());
    }

    #[test]
    fn parse_valid_source() {
        let text = "# header\n\
                    \n\
                    81.2.69.0/24, EU, GB, 51.5142, -0.0931, London  # trailing comment\n\
                    3.0.0.0/8,NA,,38.894,-77.431\n\
                    2001:db8:2::/48,AS,SG,1.2897,103.8501,Singapore, Central\n\
                    2001:db8:3::/48,NA,US,39.0438,-77.4874,\n";
        let entries = parse_source(text, "t.txt").unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(
            entries[0],
            (
                net("81.2.69.0/24"),
                rec("EU", Some("GB"), 51.5142, -0.0931, Some("London"))
            )
        );
        assert_eq!(
            entries[1],
            (net("3.0.0.0/8"), rec("NA", None, 38.894, -77.431, None))
        );
        assert_eq!(entries[2].1.city.as_deref(), Some("Singapore, Central"));
        assert_eq!(entries[3].1.city, None);
    }

    #[test]
    fn parse_collects_every_error_with_line_numbers() {
        let text = "# comment\n\
                    1.2.3.0/24,EU,DE,50,8\n\
                    1.2.3.4/24,EU,DE,50,8\n\
                    not-a-cidr,EU,DE,50,8\n\
                    1.2.4.0/24,EU,DE,91,8\n\
                    1.2.5.0/24,EU,DE,50,-181\n\
                    1.2.6.0/24,XX,DE,50,8\n\
                    1.2.7.0/24,EU,de,50,8\n\
                    1.2.3.0/24,EU,DE,50,8\n\
                    1.2.8.0/24,EU,DE\n\
                    1.2.9.0/24,EU,DEU,abc,8\n";
        let errors = parse_source(text, "src.txt").unwrap_err();
        let expected = [
            "src.txt:3: ",
            "src.txt:4: ",
            "src.txt:5: ",
            "src.txt:6: ",
            "src.txt:7: ",
            "src.txt:8: ",
            "src.txt:9: ",
            "src.txt:10: ",
            "src.txt:11: ",
            "src.txt:11: ",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (e, prefix) in errors.iter().zip(expected) {
            assert!(e.starts_with(prefix), "{e} starts with {prefix}");
        }
        assert!(errors[0].contains("host bits"));
        assert!(errors[1].contains("invalid CIDR"));
        assert!(errors[2].contains("latitude"));
        assert!(errors[3].contains("longitude"));
        assert!(errors[4].contains("continent"));
        assert!(errors[5].contains("country"));
        assert!(errors[6].contains("duplicate") && errors[6].contains("line 2"));
        assert!(errors[7].contains("field"));
        assert!(errors[8].contains("country") && errors[9].contains("latitude"));
    }

    #[test]
    fn demo_source_builds_and_answers() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/geoip/demo-networks.txt");
        let text = std::fs::read_to_string(path).expect("geoip/demo-networks.txt exists");
        let entries = parse_source(&text, "geoip/demo-networks.txt").unwrap();
        let bytes = write_mmdb(&entries, "GeoSteer-Demo-City", "geosteer demo", EPOCH).unwrap();
        assert_eq!(
            bytes,
            write_mmdb(&entries, "GeoSteer-Demo-City", "geosteer demo", EPOCH).unwrap()
        );
        let r = reader(bytes);
        let cases: [(&str, &str, Option<&str>); 14] = [
            ("81.2.69.1", "EU", Some("GB")),
            ("8.8.8.8", "NA", Some("US")),
            ("1.0.0.1", "OC", Some("AU")),
            ("1.1.1.1", "AS", None),
            ("193.0.0.1", "EU", None),
            ("41.0.0.1", "AF", None),
            ("200.0.0.1", "SA", None),
            ("198.51.100.7", "AS", Some("JP")),
            ("203.0.113.7", "SA", Some("BR")),
            ("2a00:1450::1", "EU", None),
            ("2400:cb00::1", "AS", None),
            ("2001:db8:1::1", "EU", Some("DE")),
            ("2001:db8:2::1", "AS", Some("SG")),
            ("2001:db8:3::1", "NA", Some("US")),
        ];
        for (addr, cont, cc) in cases {
            let found = find(&r, addr).unwrap_or_else(|| panic!("{addr} has data"));
            assert_eq!((found.0.as_str(), found.1.as_deref()), (cont, cc), "{addr}");
        }
        let (_, _, lat, lon, _, _) = find(&r, "193.0.0.1").unwrap();
        assert_eq!((lat, lon), (52.374, 4.890));
        for addr in [
            "10.0.0.1",
            "127.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "224.0.0.1",
            "2001:db8:4::1",
            "fe80::1",
        ] {
            assert!(find(&r, addr).is_none(), "{addr} has no data");
        }
    }
}
