//! `portico import-iis`: the SfB fixture becomes a config that validates and routes as ARR did;
//! malformed XML and things Portico cannot carry over are reported with their line.

mod common;

use common::*;
use portico::demo::backend::Role;
use std::net::SocketAddr;
use std::process::{Command, Output};

/// A copy of shared/fixtures/iis/sfb-three-farms.applicationHost.config (the ARR wizard's output
/// for the SfB scenario this project starts from).
const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/iis/sfb-three-farms.applicationHost.config"
);

fn fixture() -> String {
    std::fs::read_to_string(FIXTURE).unwrap_or_else(|e| panic!("{FIXTURE}: {e}"))
}

fn import(dir: &std::path::Path, xml: &str) -> Output {
    let file = dir.join("applicationHost.config");
    std::fs::write(&file, xml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_portico"))
        .arg("import-iis")
        .arg(&file)
        .output()
        .unwrap()
}

/// Writes the placeholder certificate files an imported config names.
fn write_placeholders(lab: &Lab, toml: &str) {
    std::fs::create_dir_all(lab.path("certs")).unwrap();
    std::fs::write(lab.path("certs/internal-ca.pem"), lab.internal.cert_pem()).unwrap();
    for stem in toml
        .split("cert = \"certs/")
        .skip(1)
        .filter_map(|r| r.split(".pem").next())
    {
        lab.public
            .issue(&["*.contoso.com"])
            .unwrap()
            .write(&lab.path("certs"), stem)
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sfb_fixture_imports_to_a_config_that_routes_like_arr() {
    let lab = Lab::new();
    let out = import(lab.dir.path(), &fixture());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8(out.stdout).unwrap();
    let warnings = String::from_utf8_lossy(&out.stderr);
    // The certificate placeholder is announced with the binding's line.
    assert!(warnings.contains(":11: <binding>"), "{warnings}");
    for must in [
        "timeout = \"200s\"",
        "https_port = 4443",
        "http_port = 8080",
        "scheme = \"https\"",
        "preserve_host = true",
    ] {
        assert!(toml.contains(must), "missing {must}:\n{toml}");
    }
    write_placeholders(&lab, &toml);

    // Serve it on test addresses, with the ARR box's hosts file as [resolve].
    let proxy_ip = unique_loopback();
    let pool = unique_loopback();
    let fe = [unique_loopback(), unique_loopback()];
    let mut cfg = toml
        .replace("\"0.0.0.0:443\"", &format!("\"{proxy_ip}:8443\""))
        .replace("\"0.0.0.0:80\"", &format!("\"{proxy_ip}:8081\""));
    cfg.push_str(&format!(
        "\n[resolve]\n\"pool01.contoso.local\" = [\"{pool}\"]\n\"lyncfe01.contoso.local\" = [\"{}\"]\n\"lyncfe02.contoso.local\" = [\"{}\"]\n",
        fe[0], fe[1]
    ));
    let config = lab.write_config(&cfg);
    let v = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "{}\n{cfg}",
        String::from_utf8_lossy(&v.stderr)
    );

    let mut backends = Vec::new();
    for (ip, name) in [
        (pool, "pool01.contoso.local"),
        (fe[0], "lyncfe01.contoso.local"),
        (fe[1], "lyncfe02.contoso.local"),
    ] {
        backends.push(
            lab.tls_member(SocketAddr::new(ip, 4443), name, Role::FrontEnd)
                .await,
        );
        backends.push(
            lab.plain_member(SocketAddr::new(ip, 8080), name, Role::FrontEnd)
                .await,
        );
    }
    let p = Portico::start(&config, SocketAddr::new(proxy_ip, 8443));
    for (host, expected) in [
        ("meet.contoso.com", &["pool01.contoso.local"][..]),
        ("dialin.contoso.com", &["pool01.contoso.local"][..]),
        (
            "lyncweb.contoso.com",
            &["lyncfe01.contoso.local", "lyncfe02.contoso.local"][..],
        ),
    ] {
        let r = curl_https(&lab, host, proxy_ip, 8443, "/echo/x?a=1", &[]).await;
        assert_eq!(r.status, 200, "{host}: {r:?}\n{}", p.log_text());
        assert!(
            expected.contains(&r.header("x-backend").unwrap_or("")),
            "{host}: {r:?}"
        );
        let body = r.text();
        assert_eq!(
            json_field(&body, "local_port").as_deref(),
            Some("4443"),
            "{body}"
        );
        assert_eq!(
            json_field(&body, "uri").as_deref(),
            Some("/echo/x?a=1"),
            "{body}"
        );
        assert_eq!(
            json_field(&body, "host").as_deref(),
            Some(format!("{host}:8443").as_str())
        );
    }
    // The wizard's HTTP rules were deleted: ARR proxied nothing on port 80, nor does Portico.
    let resolve = format!("meet.contoso.com:8081:{proxy_ip}");
    let r = curl(&["--resolve", &resolve, "http://meet.contoso.com:8081/echo"]).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert!(r.header("x-backend").is_none());
}

#[test]
fn malformed_xml_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = import(dir.path(), "<configuration>\n  <webFarms>\n    <webFarm name=\"a\">\n  </webFarms>\n</configuration>\n");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("applicationHost.config:4:"), "{err}");
    assert!(err.contains("malformed XML"), "{err}");
    assert!(out.stdout.is_empty());
    let out = import(dir.path(), "<?xml version=\"1.0\"?>\n<html></html>\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":2:") && err.contains("<configuration>"),
        "{err}"
    );
}

const EVERYTHING: &str = r#"<configuration>
  <webFarms>
    <webFarm name="apps" enabled="true" primaryServer="x">
      <server address="app1.contoso.local" enabled="true">
        <applicationRequestRouting httpPort="8080" httpsPort="8443" weight="50" />
        <mystery />
      </server>
      <server address="app2.contoso.local" enabled="false">
        <applicationRequestRouting httpPort="8080" httpsPort="8443" />
      </server>
      <applicationRequestRouting>
        <loadBalancing algorithm="RequestHash" hashServerVariable="QUERY_STRING" queryStringNames="user" />
        <healthCheck url="http://apps.contoso.com/health" interval="00:00:10" statusCodeMatch="200-299" responseMatch="OK" />
        <affinity useCookie="true" cookieName="AppAffinity" />
        <protocol timeout="01:05:00" preserveHostHeader="false">
          <cache enabled="true" />
        </protocol>
      </applicationRequestRouting>
    </webFarm>
  </webFarms>
  <system.webServer>
    <proxy enabled="true" timeout="00:01:00" />
    <rewrite>
      <globalRules>
        <rule name="apps_SSL" patternSyntax="Wildcard" stopProcessing="true">
          <match url="*" />
          <conditions>
            <add input="{HTTPS}" pattern="on" />
            <add input="{HTTP_HOST}" pattern="apps.*" />
          </conditions>
          <serverVariables>
            <set name="HTTP_X_FORWARDED_PROTO" value="https" />
          </serverVariables>
          <action type="Rewrite" url="https://apps/{R:0}" />
        </rule>
        <rule name="apps" patternSyntax="Wildcard" stopProcessing="true">
          <match url="*" />
          <conditions>
            <add input="{HTTP_HOST}" pattern="apps.*" />
          </conditions>
          <action type="Rewrite" url="http://apps/{R:0}" />
        </rule>
        <rule name="old" stopProcessing="true">
          <match url="^old/(.*)" />
          <action type="Redirect" url="/new/{R:1}" redirectType="Found" />
        </rule>
        <rule name="deny">
          <match url="^admin" />
          <conditions logicalGrouping="MatchAny">
            <add input="{REMOTE_ADDR}" pattern="^10\." negate="true" />
          </conditions>
          <action type="CustomResponse" statusCode="403" statusReason="Forbidden" statusDescription="no" />
        </rule>
        <rule name="drop"><match url="^wp-login" /><action type="AbortRequest" /></rule>
        <rule name="legacy" stopProcessing="true">
          <match url="^legacy/(.*)" />
          <action type="Rewrite" url="http://legacy.contoso.local:8081/{R:1}" />
        </rule>
        <rule name="mapped"><match url="(.*)" /><action type="Rewrite" url="/{Map1:{R:1}}" /></rule>
        <rule name="files"><match url="(.*)" /><conditions><add input="{REQUEST_FILENAME}" matchType="IsFile" /></conditions><action type="None" /></rule>
        <rule name="off" enabled="false"><match url="x" /><action type="AbortRequest" /></rule>
      </globalRules>
      <outboundRules>
        <rule name="fix-location"><match serverVariable="RESPONSE_LOCATION" pattern="x" /><action type="Rewrite" value="y" /></rule>
      </outboundRules>
      <rewriteMaps><rewriteMap name="Map1"><add key="a" value="b" /></rewriteMap></rewriteMaps>
    </rewrite>
    <diskCache />
  </system.webServer>
</configuration>
"#;

/// Balancing and passive health that Portico has now: carried over, not warned about.
#[test]
fn balancing_and_live_traffic_detection_are_carried_over_not_warned_about() {
    let lab = Lab::new();
    let xml = r#"<configuration>
  <webFarms>
    <webFarm name="lrt">
      <server address="a.contoso.local" />
      <applicationRequestRouting>
        <loadBalancing algorithm="LeastResponseTime" />
        <healthCheck url="http://lrt/health" liveTrafficFailureCodes="500-599;400" maxLiveTrafficFailures="4" liveTrafficFailurePeriod="00:01:00" minServers="1" />
      </applicationRequestRouting>
    </webFarm>
    <webFarm name="byhost">
      <server address="b.contoso.local" />
      <applicationRequestRouting>
        <loadBalancing algorithm="RequestHash" hashServerVariable="HTTP_HOST" />
      </applicationRequestRouting>
    </webFarm>
    <webFarm name="byurl">
      <server address="c.contoso.local" />
      <applicationRequestRouting>
        <loadBalancing algorithm="RequestHash" />
      </applicationRequestRouting>
    </webFarm>
  </webFarms>
  <system.webServer>
    <security><requestFiltering><requestLimits maxAllowedContentLength="2147483648" /></requestFiltering></security>
    <rewrite>
      <globalRules>
        <rule name="lrt"><match url="^lrt/(.*)" /><action type="Rewrite" url="https://lrt/{R:1}" /></rule>
        <rule name="byhost"><match url="^h/(.*)" /><action type="Rewrite" url="https://byhost/{R:1}" /></rule>
        <rule name="byurl"><match url="(.*)" /><action type="Rewrite" url="https://byurl/{R:1}" /></rule>
      </globalRules>
    </rewrite>
  </system.webServer>
</configuration>
"#;
    let out = import(lab.dir.path(), xml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8(out.stdout).unwrap();
    let warnings = String::from_utf8_lossy(&out.stderr).into_owned();
    for gone in [
        "hash balancing",
        "least-response-time balancing",
        "liveTrafficFailureCodes",
        "maxLiveTrafficFailures",
        "liveTrafficFailurePeriod",
    ] {
        assert!(
            !warnings.contains(gone),
            "still warned about {gone}:\n{warnings}"
        );
    }
    assert!(
        warnings
            .lines()
            .any(|l| l.contains(":7: ") && l.contains("minServers")),
        "minServers has no Portico equivalent and must be named:\n{warnings}"
    );
    for must in [
        "load_balancing = \"least-response-time\"",
        "live_traffic = { failure_codes = \"500-599,400\", failures = 4, window = \"60s\" }",
        "load_balancing = \"request-hash\"",
        "hash = \"HTTP_HOST\"",
        // IIS request filtering's body limit (RPC over HTTP needs 2 GB) on every route.
        "max_body = \"2147483648\"",
    ] {
        assert!(toml.contains(must), "missing {must}:\n{toml}");
    }
    assert_eq!(
        toml.matches("load_balancing = \"request-hash\"").count(),
        2,
        "{toml}"
    );
    write_placeholders(&lab, &toml);
    let config = lab.write_config(&toml);
    let v = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "{}\n{toml}",
        String::from_utf8_lossy(&v.stderr)
    );
}

#[test]
fn everything_arr_can_say_is_carried_over_or_reported_with_its_line() {
    let lab = Lab::new();
    let out = import(lab.dir.path(), EVERYTHING);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8(out.stdout).unwrap();
    let warnings = String::from_utf8_lossy(&out.stderr).into_owned();
    for (line, what) in [
        (3, "Web Farm Framework"),
        (6, "<mystery>"),
        (16, "memory cache"),
        (32, "HTTP_X_FORWARDED_PROTO"),
        (60, "matchType=\"IsFile\""),
        (61, "disabled rule"),
        (64, "outbound rules"),
        (66, "rewrite maps"),
        (68, "disk cache"),
        (1, "<configuration>"), // no <site> bindings: default listeners
    ] {
        assert!(
            warnings
                .lines()
                .any(|l| l.contains(&format!(":{line}: ")) && l.contains(what)),
            "no warning for line {line} ({what}):\n{warnings}"
        );
    }
    // The map rule does not compile in Portico: commented out, with a warning on its line.
    assert!(
        warnings
            .lines()
            .any(|l| l.contains(":59: ") && l.contains("commented out")),
        "{warnings}"
    );
    for must in [
        "weight = 50",
        "enabled = false",
        "timeout = \"3900s\"",
        "preserve_host = false",
        "affinity = { cookie = \"AppAffinity\" }",
        // ARR's RequestHash on a query-string name is Portico's request-hash.
        "load_balancing = \"request-hash\"",
        "hash_query = [ \"user\" ]",
        "health = { url = \"/health\", interval = \"10s\", timeout = \"30s\", expect = \"200-299\", body = \"OK\", host = \"apps.contoso.com\" }",
        // The {HTTPS} pair is one route following the client.
        "action = { route = \"apps\", path = \"/{R:0}\" }",
        "action = { redirect = \"/new/{R:1}\", status = 302 }",
        "logical_grouping = \"MatchAny\"",
        "action = { respond = 403, reason = \"Forbidden\", body = \"no\" }",
        "action = { abort = true }",
        "name = \"proxy-legacy.contoso.local-8081\"",
        "timeout = \"60s\"",
        "# NOT ACTIVE",
    ] {
        assert!(toml.contains(must), "missing {must}:\n{toml}");
    }
    assert!(
        !toml.contains("name = \"apps_SSL\""),
        "pair not merged:\n{toml}"
    );
    write_placeholders(&lab, &toml);
    let config = lab.write_config(&toml);
    let v = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "{}\n{toml}",
        String::from_utf8_lossy(&v.stderr)
    );
}
