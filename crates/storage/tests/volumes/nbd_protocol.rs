//! Protocol corners no stock client exercises on purpose, with a minimal client
//! written here from the spec: unknown options, bad ranges, pipelining.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::common::*;

const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;

struct Client {
    s: TcpStream,
}

impl Client {
    /// Connects and reads the greeting; sends FIXED_NEWSTYLE | NO_ZEROES.
    fn connect(port: u16) -> Client {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut greeting = [0u8; 18];
        s.read_exact(&mut greeting).unwrap();
        assert_eq!(&greeting[..8], b"NBDMAGIC");
        assert_eq!(
            u64::from_be_bytes(greeting[8..16].try_into().unwrap()),
            IHAVEOPT
        );
        assert_eq!(u16::from_be_bytes([greeting[16], greeting[17]]) & 3, 3);
        s.write_all(&3u32.to_be_bytes()).unwrap();
        Client { s }
    }

    fn option(&mut self, option: u32, data: &[u8]) {
        let mut msg = IHAVEOPT.to_be_bytes().to_vec();
        msg.extend_from_slice(&option.to_be_bytes());
        msg.extend_from_slice(&(data.len() as u32).to_be_bytes());
        msg.extend_from_slice(data);
        self.s.write_all(&msg).unwrap();
    }

    /// (option, reply type, data)
    fn option_reply(&mut self) -> (u32, u32, Vec<u8>) {
        let mut head = [0u8; 20];
        self.s.read_exact(&mut head).unwrap();
        assert_eq!(
            u64::from_be_bytes(head[..8].try_into().unwrap()),
            REPLY_MAGIC
        );
        let len = u32::from_be_bytes(head[16..20].try_into().unwrap()) as usize;
        let mut data = vec![0u8; len];
        self.s.read_exact(&mut data).unwrap();
        (
            u32::from_be_bytes(head[8..12].try_into().unwrap()),
            u32::from_be_bytes(head[12..16].try_into().unwrap()),
            data,
        )
    }

    fn go(&mut self, name: &str) -> u32 {
        let mut data = (name.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(&0u16.to_be_bytes());
        self.option(7, &data);
        loop {
            let (_, kind, _) = self.option_reply();
            if kind != 3 {
                return kind;
            }
        }
    }

    fn request(&mut self, kind: u16, cookie: u64, offset: u64, len: u32, payload: &[u8]) {
        let mut msg = 0x2560_9513u32.to_be_bytes().to_vec();
        msg.extend_from_slice(&0u16.to_be_bytes());
        msg.extend_from_slice(&kind.to_be_bytes());
        msg.extend_from_slice(&cookie.to_be_bytes());
        msg.extend_from_slice(&offset.to_be_bytes());
        msg.extend_from_slice(&len.to_be_bytes());
        msg.extend_from_slice(payload);
        self.s.write_all(&msg).unwrap();
    }

    /// (error, cookie) of one simple reply; the caller reads any payload.
    fn reply(&mut self) -> (u32, u64) {
        let mut head = [0u8; 16];
        self.s.read_exact(&mut head).unwrap();
        assert_eq!(
            u32::from_be_bytes(head[..4].try_into().unwrap()),
            0x6744_6698
        );
        (
            u32::from_be_bytes(head[4..8].try_into().unwrap()),
            u64::from_be_bytes(head[8..16].try_into().unwrap()),
        )
    }
}

#[test]
fn unknown_options_get_err_unsup_and_bad_go_requests_a_clear_error() {
    let served = serve_raw_volume_plain(1 << 20);
    let mut c = Client::connect(served.port);
    c.option(8, &[]); // STRUCTURED_REPLY: not offered
    assert_eq!(c.option_reply().1, (1 << 31) | 1);
    c.option(5, &[]); // STARTTLS
    assert_eq!(c.option_reply().1, (1 << 31) | 1);
    c.option(42, b"whatever");
    assert_eq!(c.option_reply().1, (1 << 31) | 1);
    c.option(7, &[0, 0, 0, 9, b'x']); // name runs past the data
    assert_eq!(c.option_reply().1, (1 << 31) | 3);
    assert_eq!(c.go("no-such-export"), (1 << 31) | 6);
    c.option(2, &[]); // ABORT
    assert_eq!(c.option_reply().1, 1);
}

#[test]
fn pipelined_requests_all_get_well_formed_replies() {
    let served = serve_raw_volume_plain(4 << 20);
    let mut c = Client::connect(served.port);
    assert_eq!(c.go(EXPORT), 1);
    // 32 writes of distinct patterns sent back to back, then 32 reads, then the replies.
    for i in 0..32u64 {
        c.request(1, 1000 + i, i * 65536 + 100, 5000, &vec![i as u8 + 1; 5000]);
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..32 {
        let (error, cookie) = c.reply();
        assert_eq!(error, 0);
        assert!(seen.insert(cookie));
    }
    for i in 0..32u64 {
        c.request(0, 2000 + i, i * 65536 + 100, 5000, &[]);
    }
    for _ in 0..32 {
        let (error, cookie) = c.reply();
        assert_eq!(error, 0);
        let mut data = vec![0u8; 5000];
        c.s.read_exact(&mut data).unwrap();
        let i = cookie - 2000;
        assert!(
            data.iter().all(|&b| b == i as u8 + 1),
            "read {i} returned another request's data"
        );
    }
    // Out of range: EINVAL for reads, ENOSPC for writes; unknown command EINVAL. No payload on errors.
    c.request(0, 1, (4 << 20) - 10, 11, &[]);
    assert_eq!(c.reply(), (22, 1));
    c.request(1, 2, (4 << 20) - 10, 11, &[0u8; 11]);
    assert_eq!(c.reply(), (28, 2));
    c.request(9, 3, 0, 0, &[]);
    assert_eq!(c.reply(), (22, 3));
    c.request(3, 4, 0, 0, &[]); // FLUSH
    assert_eq!(c.reply(), (0, 4));
    c.request(4, 5, 0, 4096, &[]); // TRIM
    assert_eq!(c.reply(), (0, 5));
    c.request(6, 6, 100, 200, &[]); // WRITE_ZEROES
    assert_eq!(c.reply(), (0, 6));
    c.request(0, 7, 0, 400, &[]);
    assert_eq!(c.reply(), (0, 7));
    let mut data = vec![0u8; 400];
    c.s.read_exact(&mut data).unwrap();
    assert!(data[100..300].iter().all(|&b| b == 0));
    assert!(data[300..].iter().all(|&b| b == 1));
    // Detach: the next read is EIO with no data, GO is refused on a new connection.
    served.volume.detach();
    c.request(0, 8, 0, 4096, &[]);
    assert_eq!(c.reply(), (5, 8));
    c.request(2, 9, 0, 0, &[]); // DISC
    let mut rest = Vec::new();
    c.s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after DISC");
    let mut refused = TcpStream::connect(("127.0.0.1", served.port)).unwrap();
    let mut buf = [0u8; 18];
    assert!(
        refused.read_exact(&mut buf).is_err(),
        "a detached export closes new connections"
    );
}
