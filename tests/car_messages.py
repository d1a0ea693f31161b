"""CAR (compute accounting record) XML messages for the tests that parse them."""

from __future__ import annotations

CAR_NS = "http://eu-emi.eu/namespaces/2012/11/computerecord"


def car_record(*, cpu: str = '<urf:CpuDuration urf:usageType="all">PT1H</urf:CpuDuration>',
               service_level: str = '<urf:ServiceLevel urf:type="HEPSPEC">10.5</urf:ServiceLevel>',
               machine: str = "<urf:MachineName>wn1.example.org</urf:MachineName>",
               job_id: str = "123456", wall: str = "P1DT1H1M1.5S",
               end: str = "2012-06-01T02:00:00+01:00", extra: str = "") -> str:
    """A record shaped like the EMI CAR 1.2 example (nested identities, urf: attributes)."""
    return f"""
  <urf:UsageRecord>
    <urf:RecordIdentity urf:createTime="2012-06-01T12:00:00Z" urf:recordId="wn1 {job_id}"/>
    <urf:JobIdentity><urf:GlobalJobId>gsiftp://ce/{job_id}</urf:GlobalJobId>
      <urf:LocalJobId>{job_id}</urf:LocalJobId></urf:JobIdentity>
    <urf:UserIdentity>
      <urf:GlobalUserName urf:type="opensslCompat">/C=UK/O=eScience/CN=a user</urf:GlobalUserName>
      <urf:Group>atlas</urf:Group>
      <urf:GroupAttribute urf:type="FQAN">/atlas/higgs/Role=production/Capability=NULL</urf:GroupAttribute>
      <urf:GroupAttribute urf:type="group">/atlas/higgs</urf:GroupAttribute>
      <urf:GroupAttribute urf:type="role">Role=production</urf:GroupAttribute>
      <urf:LocalUserId>atlas001</urf:LocalUserId>
    </urf:UserIdentity>
    <urf:Status>completed</urf:Status>
    <urf:Infrastructure urf:description="APEL-CREAM-PBS" urf:type="grid"/>
    <urf:WallDuration>{wall}</urf:WallDuration>
    {cpu}
    {service_level}
    <urf:Memory urf:type="Physical" urf:storageUnit="KB" urf:metric="max">2048</urf:Memory>
    <urf:Memory urf:type="Shared" urf:storageUnit="KB" urf:metric="max">4096</urf:Memory>
    <urf:NodeCount>1</urf:NodeCount>
    <urf:Processors urf:metric="max">8</urf:Processors>
    <urf:EndTime>{end}</urf:EndTime>
    <urf:StartTime>2012-05-31T22:00:00Z</urf:StartTime>
    {machine}
    <urf:SubmitHost>ce01.example.org:8443/cream-pbs-atlas</urf:SubmitHost>
    <urf:Queue urf:description="execution">atlas</urf:Queue>
    <urf:Site urf:type="gocdb">RAL-LCG2</urf:Site>
    {extra}
  </urf:UsageRecord>"""


def car(*records: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<urf:UsageRecords xmlns:urf="{CAR_NS}">'
            + "".join(records) + "\n</urf:UsageRecords>")
