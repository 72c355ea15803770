"""Build an ORU^R01 with hl7apy, send it over MLLP, print the ACK's MSA.

Usage: hl7_send.py HOST PORT CONTROL_ID PATIENT_ID OBX...
where each OBX is "identifier^text^system=value=units[=type]", e.g.
"8867-4^Heart rate^LN=72=/min^^UCUM" (type NM), or a coded value:
"67775-7^Level of responsiveness^LN=LA17108-4^Verbal^LN==CWE".
Prints "MSA-1|MSA-2|MSA-3" of the ACK, parsed with hl7apy.
"""
import socket
import sys

from hl7apy.core import Message
from hl7apy.parser import parse_message


def build(control_id: str, patient_id: str, observations: list[str]) -> str:
    m = Message("ORU_R01", version="2.5")
    m.msh.msh_3 = "MONITOR_GW"
    m.msh.msh_4 = "ICU"
    m.msh.msh_7 = "20261125083000"
    m.msh.msh_9 = "ORU^R01^ORU_R01"
    m.msh.msh_10 = control_id
    m.msh.msh_11 = "P"
    result = m.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    patient.pid.pid_3 = f"{patient_id}^^^HOSP^MR"
    patient.pid.pid_5 = "Doe^Jane"
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    order.obr.obr_1 = "1"
    order.obr.obr_4 = "VITALS"
    order.obr.obr_7 = "20261125082955"
    for i, spec in enumerate(observations, 1):
        identifier, value, units, *kind = spec.split("=")
        value_type = kind[0] if kind else "NM"
        obs = order.add_group("ORU_R01_OBSERVATION")
        obs.obx.obx_1 = str(i)
        obs.obx.obx_2 = value_type
        obs.obx.obx_3 = identifier
        obs.obx.obx_5 = value
        if units:
            obs.obx.obx_6 = units
        obs.obx.obx_11 = "F"
    return m.to_er7()


def main() -> None:
    host, port, control_id, patient_id, *observations = sys.argv[1:]
    message = build(control_id, patient_id, observations)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"\x0b" + message.encode() + b"\x1c\x0d")
        data = b""
        while not data.endswith(b"\x1c\x0d"):
            chunk = s.recv(4096)
            if not chunk:
                raise SystemExit("connection closed before the ACK")
            data += chunk
    ack = parse_message(data[1:-2].decode(), find_groups=False)
    msa = ack.msa
    print(f"{msa.msa_1.value}|{msa.msa_2.value}|{msa.msa_3.value if msa.msa_3 else ''}")


main()
