use super::*;

fn sample() -> QueryLine {
    QueryLine {
        client: "10.244.1.4:50940".parse().unwrap(),
        id: 51439,
        qtype: type_name(1).into_owned(),
        qclass: class_name(1).into_owned(),
        name: "abc.svc.cluster.local.".into(),
        proto: Proto::Udp,
        size: 51,
        do_bit: false,
        bufsize: 512,
        rcode: rcode_name(3).into_owned(),
        flags: Flags::from_header(0x85, 0x03).to_string(),
        rsize: 144,
        duration: Duration::from_nanos(114_128),
    }
}

#[test]
fn writes_coredns_default_line() {
    assert_eq!(
        sample().to_string(),
        "[INFO] 10.244.1.4:50940 - 51439 \"A IN abc.svc.cluster.local. udp 51 false 512\" NXDOMAIN qr,aa,rd 144 0.000114128s"
    );
    let mut v6 = sample();
    v6.client = "[fd00::5]:53".parse().unwrap();
    v6.proto = Proto::Tcp;
    v6.duration = Duration::from_millis(2);
    assert!(
        v6.to_string()
            .starts_with("[INFO] [fd00::5]:53 - 51439 \"A IN abc.svc.cluster.local. tcp 51 "),
        "{v6}"
    );
    assert!(v6.to_string().ends_with(" 144 0.002s"), "{v6}");
}

#[test]
fn what_is_written_reads_back_the_same() {
    let mut lines = vec![sample()];
    let mut l = sample();
    l.client = "[::1]:5353".parse().unwrap();
    l.proto = Proto::Tcp;
    l.do_bit = true;
    l.bufsize = 65535;
    l.qtype = type_name(65534).into_owned();
    l.qclass = class_name(3).into_owned();
    l.rcode = "-".into();
    l.flags = "-".into();
    l.rsize = 0;
    l.duration = Duration::ZERO;
    lines.push(l);
    let mut l = sample();
    l.duration = Duration::from_millis(2500);
    l.flags = Flags::from_header(0x81, 0xf0).to_string();
    lines.push(l);
    for l in lines {
        assert_eq!(QueryLine::parse(&l.to_string()), Some(l.clone()), "{l}");
    }
}

#[test]
fn reads_other_writers_spellings() {
    // A bare IPv6 client, Go's duration units, the `{combined}` format's opcode after the rest.
    let l = QueryLine::parse(
        "[INFO] fd00::5:53 - 7 \"AAAA IN www.example.test. tcp 45 true 65535\" NOERROR qr,rd,ra 101 2.5ms \"QUERY\"\n",
    )
    .unwrap();
    assert_eq!(l.client, "[fd00::5]:53".parse().unwrap());
    assert_eq!(l.duration, Duration::from_micros(2500));
    assert_eq!((l.proto, l.do_bit, l.bufsize), (Proto::Tcp, true, 65535));
    assert_eq!(
        parse_duration("114.128µs"),
        Some(Duration::from_nanos(114_128))
    );
    assert_eq!(parse_duration("3ns"), Some(Duration::from_nanos(3)));
    assert_eq!(parse_duration("soon"), None);
}

#[test]
fn other_lines_are_not_query_lines() {
    for line in [
        ".:53",
        "[INFO] plugin/reload: Running configuration SHA512 = ab",
        "[INFO] lab-upstream: serving zone example.test. on 0.0.0.0:53 (udp, tcp)",
        "[INFO] 10.0.0.1:1 - 2 \"A IN a. udp 1 false 512\" NOERROR qr 1 soon",
        "[INFO] 10.0.0.1:1 - 2 \"A IN a. quic 1 false 512\" NOERROR qr 1 0.1s",
        "[ERROR] plugin/errors: 2 a. A: boom",
    ] {
        assert_eq!(QueryLine::parse(line), None, "{line}");
    }
}

#[test]
fn names_as_coredns_prints_them() {
    assert_eq!(rcode_name(0), "NOERROR");
    assert_eq!(rcode_name(10), "NOTZONE");
    assert_eq!(rcode_name(16), "BADVERS");
    assert_eq!(rcode_name(11), "RCODE11");
    assert_eq!(type_name(28), "AAAA");
    assert_eq!(type_name(33), "SRV");
    assert_eq!(type_name(65000), "TYPE65000");
    assert_eq!(class_name(3), "CH");
    assert_eq!(class_name(42), "CLASS42");
    assert_eq!(Flags::from_header(0x81, 0x80).to_string(), "qr,rd,ra");
    assert_eq!(
        Flags::from_header(0x87, 0xf0).to_string(),
        "qr,aa,tc,rd,ra,z,ad,cd"
    );
    assert_eq!(Flags::default().to_string(), "");
    assert_eq!(Proto::parse("tcp"), Some(Proto::Tcp));
    assert_eq!(Proto::Udp.to_string(), "udp");
}

#[test]
fn placeholders_spell_the_line() {
    let l = sample();
    let common = "{remote}:{port} - {>id} \"{type} {class} {name} {proto} {size} {>do} {>bufsize}\" {rcode} {>rflags} {rsize} {duration}";
    let mut out = String::from("[INFO] ");
    let mut rest = common;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap();
        out.push_str(&l.placeholder(&rest[start + 1..start + end]).unwrap());
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    assert_eq!(out, l.to_string());
    assert_eq!(l.placeholder(">opcode"), None);
}

#[test]
fn error_lines_are_written_and_read_back() {
    let e = ErrorLine {
        rcode: 2,
        name: "off-6.wild.example.test.".into(),
        qtype: "A".into(),
        message: "read udp 172.26.0.1:53: Connection refused (os error 111)".into(),
    };
    let line = e.to_string();
    assert_eq!(
        line,
        "[ERROR] plugin/errors: 2 off-6.wild.example.test. A: read udp 172.26.0.1:53: Connection refused (os error 111)"
    );
    assert_eq!(ErrorLine::parse(&line), Some(e));
    assert_eq!(ErrorLine::parse("[INFO] plugin/reload: x"), None);
    assert_eq!(QueryLine::parse(&line), None);
}
