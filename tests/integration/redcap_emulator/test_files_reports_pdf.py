"""File upload fields, the File Repository, reports and PDFs through PyCap."""

from __future__ import annotations

import io

import httpx
import pytest
import redcap
from redcap import RedcapError

from sim.redcap.testing import RunningEmulator

from .conftest import BASELINE, PerpainProject, error_message
from .test_project_xml import create_project

ATTACHMENT_XML_FIELD = (
    '<ItemRef ItemOID="fb_comment" Mandatory="No" redcap:Variable="fb_comment"/>'
    '<ItemRef ItemOID="fb_photo" Mandatory="No" redcap:Variable="fb_photo"/>')
PHOTO_DEF = ('<ItemDef OID="fb_photo" Name="fb_photo" DataType="text" Length="999" '
             'redcap:Variable="fb_photo" redcap:FieldType="file"><Question><TranslatedText>'
             'Photo</TranslatedText></Question></ItemDef>\n\t<ItemDef OID="feedback_complete"')


@pytest.fixture
def clinic(perpain: PerpainProject) -> redcap.Project:
    from .test_users_and_rights import CLINIC_XML

    xml = CLINIC_XML.replace(
        '<ItemRef ItemOID="fb_comment" Mandatory="No" redcap:Variable="fb_comment"/>',
        ATTACHMENT_XML_FIELD).replace('<ItemDef OID="feedback_complete"', PHOTO_DEF, 1)
    return perpain.project(create_project(perpain.api_url, "Clinic files", xml, perpain.statuses))


def test_file_field_import_export_delete(clinic: redcap.Project) -> None:
    clinic.import_file(record="2", field="fb_photo", file_name="scan.txt",
                       file_object=io.BytesIO(b"hello file"))
    content, meta = clinic.export_file(record="2", field="fb_photo")
    assert content == b"hello file" and meta["name"] == "scan.txt"
    row = clinic.export_records(records=["2"], fields=["fb_photo"])[0]
    assert row["fb_photo"] == "[document]"
    clinic.delete_file(record="2", field="fb_photo")
    with pytest.raises(RedcapError) as err:
        clinic.export_file(record="2", field="fb_photo")
    assert "no file" in error_message(err)
    with pytest.raises(ValueError):  # PyCap itself refuses a field that is not a file field
        clinic.export_file(record="2", field="fb_comment")


def test_file_repository(project: redcap.Project) -> None:
    folder = project.create_folder_in_repository(name="Protocols")[0]["folder_id"]
    project.import_file_into_repository(file_name="v1.txt", file_object=io.BytesIO(b"v1"),
                                        folder_id=folder)
    project.import_file_into_repository(file_name="top.txt", file_object=io.BytesIO(b"top"))
    top = project.export_file_repository()
    assert {"folder_id": folder, "name": "Protocols"} in top
    inside = project.export_file_repository(folder_id=folder)
    assert [i["name"] for i in inside] == ["v1.txt"]
    content, meta = project.export_file_from_repository(doc_id=inside[0]["doc_id"])
    assert (content, meta["name"]) == (b"v1", "v1.txt")
    project.delete_file_from_repository(doc_id=inside[0]["doc_id"])
    assert project.export_file_repository(folder_id=folder) == []
    with pytest.raises(RedcapError):  # (PyCap spots errors in file answers only as XML)
        project.export_file_from_repository(doc_id=99999, return_format_type="xml")


def test_report_export_applies_its_fields_and_filter(
        project: redcap.Project, perpain: PerpainProject, emulator: RunningEmulator) -> None:
    project.import_records([{"record_id": str(i), "redcap_event_name": BASELINE,
                             "dem_age": str(20 * i)} for i in (1, 2, 3)])
    created = httpx.post(f"{emulator.base_url}/emulator/projects/{perpain.pid}/reports", json={
        "title": "Older", "fields": ["record_id", "dem_age"], "events": [BASELINE],
        "filter_logic": "[dem_age] > 30"})
    report_id = created.json()["report_id"]
    rows = project.export_report(report_id=str(report_id))
    assert [(r["record_id"], r["dem_age"]) for r in rows] == [("2", "40"), ("3", "60")]
    assert "dem_sex" not in rows[0]
    with pytest.raises(RedcapError) as err:
        project.export_report(report_id="77")
    assert error_message(err) == 'The value of the parameter "report_id" is not valid'


def test_pdf_is_a_real_pdf(project: redcap.Project, perpain: PerpainProject) -> None:
    project.import_records([{"record_id": "1", "redcap_event_name": BASELINE, "dem_age": "44"}])
    content, meta = project.export_pdf(record="1", event=BASELINE, instrument="demographics")
    assert content.startswith(b"%PDF-1.4") and content.rstrip().endswith(b"%%EOF")
    assert meta["name"] == "1.pdf"
    start = int(content.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    assert content[start:start + 4] == b"xref"  # the cross-reference table is where it says
    assert b"44" in content
    blank, _ = project.export_pdf()
    assert blank.startswith(b"%PDF-")
    answer, _ = project.export_pdf(record="404")  # PyCap hands back the error's bytes
    assert perpain.statuses.last == 400
    assert answer == b'{"error": "The record \'404\' does not exist"}'
